// Package asm will hold the feature engine's hot kernels: AVX2/FMA Go
// assembly generated with avo, beside pure-Go versions that are always
// compiled, the path picked once at start-up (the layout of
// klauspost/compress). For now it holds that start-up decision's input: what
// this CPU supports, read once through klauspost/cpuid. No assembly kernel
// exists yet; the feature engine runs pure Go everywhere.
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
