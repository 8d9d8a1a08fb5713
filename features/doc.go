// Package features turns normalized ticks into per-step feature records.
//
// # Event time
//
// Steps are cut on the tick's RecvTS, the local receive clock, not on ExchTS.
// RecvTS is present for every venue and every message, it is monotonic per
// connection and, because it is one clock, comparable across venues. Exchange
// clocks differ from venue to venue (skew, different resolutions) and some
// messages carry none, so they cannot order a multi-venue stream. The price of
// this choice is that network latency is part of the time axis: a venue whose
// feed lags by more than Config.AllowedLateness sees its ticks dropped as late.
//
// Step k covers RecvTS in [k*Step, (k+1)*Step); its record is stamped with the
// step's end, (k+1)*Step. The engine's clock is the largest RecvTS seen so far
// (from any tick, including kinds the engine ignores). Step k closes, and its
// record is emitted, once clock >= (k+1)*Step + AllowedLateness. A tick whose
// step has already closed (RecvTS before the oldest open step's start) is not
// applied and is counted in signald_features_late_ticks_total. The oldest open
// step is thus a function of the clock alone: floor((clock-AllowedLateness)/Step),
// also for the very first tick. Within a step
// the quote with the largest RecvTS sets the step's mid (ties: the one applied
// last).
//
// # Catalogue
//
// The features are base series x windows x statistics (Catalog,
// features/CATALOG.md, `signald features list`). Per step and instrument
// the engine derives 16 base series from the step's ticks (mid and trade
// log returns, spread, microprice deviation, top-of-book imbalance, signed
// volume, volume, notional, trade count, VWAP deviation, mean trade size,
// trade inter-arrival time, quote rate, cross-venue basis, trade imbalance,
// intra-step mid range) and keeps, for every configured window (default 5,
// 15, 60, 300 and 900 steps), 18 statistics of each: mean, std, z, min, max,
// range_pos, skew, kurt, ewm, ewstd, slope, r2, ac1, sum, pos_share, updown,
// argmax_age and argmin_age, plus rv for the returns. Columns are named
// "<base>" (per step, and "mid"), "<base>_<stat>_<window>" and, for the
// cross-sectional ranks of a chosen subset (Config.XRank),
// "<column>_xrank". Every FeatureDoc gives the definition, unit, window and
// warm-up. Market-wide aggregates of each step (breadth, dispersion, mean
// volatility, totals) are kept apart from the rows: Engine.Market,
// MarketCatalog.
//
// A base series starts for an instrument at its first defined value (the
// first quote for mid-based series, the first trade for trade-price series,
// the instrument's first step for counts and volumes) and stays defined from
// then on: carried forward, or 0 in steps without data, as each base
// documents. A window statistic is NaN until the window holds w values of
// the series.
//
// # Records
//
// Each closed step yields one arrow.Record with one row per instrument (key:
// venue + instrument) whose first accepted tick falls in that step or an
// earlier one, sorted by venue, then instrument. Steps that would have no row
// (before the first accepted tick) produce no record. Columns are time
// (timestamp[ns, UTC], the step end), venue, instrument and then one float64
// column per feature in Catalog order. Values that are not yet defined (warm-up,
// no quote yet) are NaN, never null. The schema carries SchemaVersion under the
// metadata key "signald.features.schema_version" and each feature column's
// documentation in its field metadata. The statistics are computed straight
// into the record's column buffers: consumers (detectors, the HTTP API) read
// them without a copy.
//
// A record passed to emit is released by the engine when emit returns; a
// consumer that keeps it (or any of its columns) must call Retain.
//
// # Empty steps and gaps
//
// A step in which an instrument has no ticks still produces its row: mid,
// spread and the other quote-based series are carried forward, returns are 0
// (the carried mid did not move), counts and volumes are 0, and the rolling
// windows advance with those values. When the clock jumps over many empty
// steps, at most max(Windows) empty steps are closed and emitted one by one;
// by then every rolling window holds only empty steps, so the remaining
// steps would differ from the last emitted one only in their time and in the
// exponentially weighted statistics, which keep converging. They are skipped
// (no record) and counted in signald_features_skipped_steps_total, and the
// exponentially weighted state is advanced over them in closed form (with a
// constant input x and q = 1-alpha, k steps take the mean m to
// x + q^k (m-x) and the variance v to q^k (v + (x-m)^2 (1-q^k))). Work per gap
// is therefore bounded by the largest window, whatever the jump.
//
// # Incremental state
//
// No window is ever recomputed. The state is a structure of arrays over
// instruments: every state variable of a (series, window) is one []float64
// indexed by instrument, and each series has one ring buffer of max(Windows)+1
// rows, a row holding every instrument's value of one step, so the values
// entering and leaving a window are contiguous rows and each step is a
// handful of vector kernels per series and window (features/asm: AVX2 with a
// bit-identical pure-Go fallback). Instruments enter the store, in row
// order, when their first step closes; the store is reallocated then (rare:
// O(state) once per step in which instruments appear). Minimum, maximum and
// their ages come from a block decomposition of each window (blocks of about
// sqrt(w) steps: the suffix of the oldest block, the whole blocks, the prefix
// of the current one), kept as the same kind of per-instrument arrays and
// updated by vector kernels (the blocks of different series and windows start
// at staggered steps, spreading their recomputations over the steps): O(1)
// amortized per step whatever the data, and no per-instrument branches (a
// monotonic deque per instrument, the usual structure, is scalar and
// branchy). Memory: 8 bytes per series, step of the
// largest window and instrument for the rings, plus the sums and the blocks'
// extremes; Engine.StateBytesPerInstrument and
// signald_features_state_bytes_per_instrument report it (about 190 kB with
// the defaults).
//
// # Numerics
//
// Means and higher moments come from Neumaier-compensated sums of the
// powers of d = x - shift, the shift being the series' first value,
// re-anchored to the window mean when the mean has moved far from it
// relative to the standard deviation (recomputing that instrument's sums from
// the ring: O(w), at most once per w steps, counted in
// signald_features_reanchors_total), so that a window with a large mean and a
// tiny variance (prices near 1e5 moving by 1e-3) does not cancel
// catastrophically as one-pass formulas (and pandas' rolling var, skew and
// kurt) do. Sums, sums of squares, the lag-1 cross products and the OLS
// cross term are compensated rolling sums too; counts are exact integers. A
// window whose values are all equal (e.g. the zero returns of a quiet or gap
// period) reports its mean and sum exactly, a standard deviation and slope of
// exactly 0, and NaN for the statistics that divide by the variance (z,
// skew, kurt, r2, ac1, range_pos). Every statistic is tested against a naive
// two-pass reference, over a million steps for the moments path.
//
// # Determinism
//
// Records are a pure function of the tick sequence given to Apply and Flush:
// no wall clock, no map iteration order and no concurrency is involved, so a
// backtest that replays the recorded ticks reproduces the live records bit for
// bit on the same architecture. (math.Log has architecture-specific
// implementations, so bitwise equality across CPU architectures is not
// promised.) The AVX2 and the pure-Go kernels of features/asm perform the
// same operations in the same order: both give the same records bit for bit.
//
// An Engine is not safe for concurrent use; Schema and Features are immutable
// and may be read from any goroutine.
package features
