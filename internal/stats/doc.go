// Package stats holds the running statistics the engine shares: Welford's
// mean and variance and Neumaier's compensated sum. They are value types
// whose zero value is ready, with methods small enough to inline, so hot
// loops pay nothing for the indirection.
//
// Both are bit-exact contracts: the feature engine's outputs, the
// detectors' signals and the regime model's fit are pinned bit for bit by
// tests that depend on the exact sequence of IEEE operations here. Changing
// an expression (even reassociating it, or letting the compiler fuse a
// multiply and an add) is a change of results.
package stats
