package asm

import (
	"runtime"
	"testing"

	"github.com/klauspost/cpuid/v2"
)

// Detect agrees with a fresh cpuid query, and AVX2 implies the baseline
// x86-64 features it needs.
func TestDetect(t *testing.T) {
	c := Detect()
	if c.AVX2 != cpuid.CPU.Has(cpuid.AVX2) || c.FMA != cpuid.CPU.Has(cpuid.FMA3) || c.CLMUL != cpuid.CPU.Has(cpuid.CLMUL) {
		t.Fatalf("Detect %+v disagrees with cpuid", c)
	}
	if runtime.GOARCH != "amd64" && (c.AVX2 || c.FMA || c.AVX512) {
		t.Fatalf("x86 features reported on %s: %+v", runtime.GOARCH, c)
	}
	if c.AVX2 && !cpuid.CPU.Supports(cpuid.SSE2, cpuid.SSE4) {
		t.Fatalf("AVX2 without SSE2/SSE4.1: %+v", c)
	}
	if f := c.Flags(); len(f) != 4 || f["avx2"] != c.AVX2 {
		t.Fatalf("flags %v", f)
	}
	t.Logf("%+v", c)
}
