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
// documentation in its field metadata.
//
// A record passed to emit is released by the engine when emit returns; a
// consumer that keeps it (or any of its columns) must call Retain.
//
// # Empty steps and gaps
//
// A step in which an instrument has no ticks still produces its row: mid and
// spread_bps are carried forward, ret is 0 (the carried mid did not move),
// trade_count and volume are 0, and the rolling windows advance with those
// values. When the clock jumps over many empty steps, at most max(Windows)
// empty steps are closed and emitted one by one; by then every rolling window
// holds only empty steps, so the remaining steps would differ from the last
// emitted one only in their time. They are skipped (no record) and counted in
// signald_features_skipped_steps_total. Work per gap is therefore bounded by
// the largest window, whatever the jump.
//
// # Numerics
//
// Rolling statistics are O(1) per step: every series (step returns, buy and
// sell volume) has one ring buffer sized to the largest window, and every window
// keeps running sums that add the new value and remove the evicted one. The
// sums are Neumaier-compensated, and the variance sums are taken about a shift
// (the first value; re-anchored to the window mean when the mean has moved far
// from it relative to the standard deviation, which costs O(w) at most once
// per w steps) so that a window with a large mean and a tiny variance does not
// cancel catastrophically. A window whose values are all
// equal (e.g. the zero returns of a quiet or gap period) reports its mean and a
// standard deviation of 0 exactly, and sums over windows without any volume
// are exactly 0.
//
// # Determinism
//
// Records are a pure function of the tick sequence given to Apply and Flush:
// no wall clock, no map iteration order and no concurrency is involved, so a
// backtest that replays the recorded ticks reproduces the live records bit for
// bit on the same architecture. (math.Log has architecture-specific
// implementations, so bitwise equality across CPU architectures is not
// promised.)
//
// An Engine is not safe for concurrent use; Schema and Features are immutable
// and may be read from any goroutine.
package features
