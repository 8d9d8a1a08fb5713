// Package asm holds the feature engine's hot kernels: element-wise updates of
// per-instrument state in structure-of-arrays form (compensated moments of a
// filling window and their statistics, compensated rolling sums of
// products, a window step's fused update of sums, exponentially weighted
// mean and variance and counts, and its derived statistics, running extremes
// with the step of their latest occurrence (extrema.go), a NaN-skipping
// compensated sum). Each kernel has a pure-Go version, always
// compiled, and an AVX2 version in Go assembly generated with avo
// (_generate/, `make generate`); the path is picked once at start-up from
// what this CPU supports, read once through klauspost/cpuid, and `-tags
// noasm` builds without the assembly. The layout is klauspost/compress's:
// kernels.go and extrema.go (API and dispatch), kernels_generic.go and
// extrema_generic.go, kernels_amd64.go
// (stubs) and kernels_amd64.s (both generated), kernels_asm_amd64.go and
// kernels_noasm.go (whether the assembly is built). Both paths perform
// the same IEEE operations in the same order, so their results agree bit
// for bit; see each kernel's documentation.
package asm

import "github.com/klauspost/cpuid/v2"

// CPU is what the kernels may use on this machine.
type CPU struct {
	Brand  string
	AVX2   bool
	FMA    bool
	AVX512 bool // AVX-512 F, DQ, BW and VL together
	CLMUL  bool // with AVX2, what simdjson-go needs
}

// detected is read once: cpuid is not free, and the choice must not change
// while the process runs.
var detected = CPU{
	Brand:  cpuid.CPU.BrandName,
	AVX2:   cpuid.CPU.Supports(cpuid.AVX2),
	FMA:    cpuid.CPU.Supports(cpuid.FMA3),
	AVX512: cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL),
	CLMUL:  cpuid.CPU.Supports(cpuid.CLMUL),
}

// Detect returns what the CPU supports.
func Detect() CPU { return detected }

// Flags lists the supported features by name, for logs and metrics.
func (c CPU) Flags() map[string]bool {
	return map[string]bool{"avx2": c.AVX2, "fma": c.FMA, "avx512": c.AVX512, "clmul": c.CLMUL}
}
