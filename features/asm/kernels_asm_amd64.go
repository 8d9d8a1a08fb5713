//go:build amd64 && gc && !noasm

package asm

// haveAsm: this build has the AVX2 kernels of kernels_amd64.s (declared in
// kernels_amd64.go); they run if the CPU has AVX2.
const haveAsm = true
