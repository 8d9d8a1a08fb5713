package ingest

// Test helpers shared by the feed tests of every venue.

// goldenTick completes a hand-written expected tick: IngestTS is the
// receive time, ID the content hash.
func goldenTick(t Tick) Tick {
	t.IngestTS = t.RecvTS
	t.ComputeID()
	return t
}

// kindCounts counts ticks by kind.
func kindCounts(ticks []Tick) map[Kind]int {
	m := map[Kind]int{}
	for _, t := range ticks {
		m[t.Kind]++
	}
	return m
}
