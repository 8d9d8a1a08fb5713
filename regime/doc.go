// Package regime turns feature batches into signals: regime states,
// changepoints, novelty and trend calls.
//
// Everything here is online and causal: a Detectors sees each feature record
// once, in order, and its output at step t depends only on records up to t
// (no smoothing, no Viterbi, no look-ahead); work per step is O(1) per
// instrument and allocates nothing per instrument in steady state.
//
// # Detectors
//
// Regime (HMM). A Gaussian hidden Markov model with diagonal covariances over
// two scale-free inputs per instrument, log_vol_ratio (ln of the W-step
// return volatility minus its own exponentially weighted baseline) and
// abs_trend_t (|t-statistic of the W-step return|), run as a forward filter:
// p_t ∝ b(x_t) ∘ (Aᵀ p_{t-1}), normalized every step. Its parameters come from
// a model file fitted offline by Fit (Baum-Welch with per-step scaling,
// k-means++ initializations, deterministic seed; `signald regime fit`); the
// states are named by their means: volatile (highest volatility), trending
// (highest |t| of the rest), calm, and quiet with four states. An
// instrument's regime changes to a state once that state has been the most
// probable, with at least Config.SwitchProb, for Config.MinDwell consecutive
// steps.
//
// Changepoints (BOCPD). Adams & MacKay's Bayesian online changepoint
// detection with a Normal-Gamma prior (Student-t predictive), a constant
// hazard and at most ChangepointConfig.MaxRunLengths run-length hypotheses
// (the least probable dropped, and any below 1e-8), on y = ln(ret² + 0.1σ²),
// whose mean moves when volatility does. A changepoint is signalled when the
// most probable run length drops by at least MinDrop to less than half and the
// new run then stays the most probable for Confirm steps.
//
// Novelty. A robust streaming Mahalanobis distance (diagonal) over a
// configurable set of feature columns: EW mean and variance with Huber-clipped
// updates, so outliers do not poison the estimate; each signal gives every
// feature's share of the squared distance.
//
// Trend calls. Time-series momentum: long, flat or short from the W-step
// return's t-statistic with a hysteresis band (Enter/Exit), a trailing
// volatility stop, and a strength in [0,1].
//
// # Signals
//
// Per instrument and step at most one signal of each type, emitted in Type
// order, with a deterministic id (market.Signal.ComputeID over model version,
// instrument, type and time), so a replay reproduces the same ids:
//
//   - regime_change: State is the regime after the step. Values: the state
//     probabilities, "run_length", and "switch" = 1 when the HMM regime
//     changed and/or "changepoint" = 1 (with "run_length_before") when BOCPD
//     confirmed a changepoint at this step. Score: the new regime's
//     probability for a switch, else the posterior probability of a change
//     within the new run.
//   - regime_probs: the filtered probabilities (Values: state -> probability,
//     rounded to 1e-6). To bound volume it is emitted only when some state's
//     probability moved by more than Config.ProbsDelta (0.25) since the
//     instrument's previous regime_probs signal, on a regime switch, and once
//     when the instrument's warm-up ends. Score: the current regime's
//     probability.
//   - novelty: State "novel"; Score: the distance D; Values: feature -> share
//     of D².
//   - trend_call: State "long", "flat" or "short" when the call changes;
//     Score: the t-statistic; Values "strength" and, unless flat, "stop".
//
// ModelVersion names the detector, its code version, the HMM model version
// (regime signals) and a hash of the configuration that decides the signals,
// so a different configuration never reuses another's ids.
//
// # Evaluation
//
// Synthesize generates streams with known regime switches and injected
// anomalies, and Evaluate scores each detector on one (detection delay, false
// alarms per hour, precision, recall); `signald regime eval` prints it. The
// default thresholds were chosen with it (see README).
package regime
