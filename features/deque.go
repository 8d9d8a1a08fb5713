package features

// mmEntry is a value of a series and the step it was pushed at.
type mmEntry struct {
	v float64
	t uint32 // roller step; ages are t differences, correct across wrap-around
}

// mmDeque is a monotonic deque over the last span steps of one series of one
// instrument: for a max deque the values strictly decrease from front to
// back, for a min deque they strictly increase, and the steps increase. The
// extreme of the last w steps (w <= span) is the first entry of age < w, so
// one deque serves every window of the series. A push is O(1) amortized; the
// buffer is a power-of-two ring that grows to at most span entries, so its
// size follows the data (about ln w entries for noise, 1 for a flat series,
// w only for a series that moves monotonically through the window).
type mmDeque struct {
	buf     []mmEntry
	head, n uint32
}

func (d *mmDeque) reset() { d.head, d.n = 0, 0 }

// arenaCap is the capacity of a deque's slot in its series' arena: deques
// start there, side by side in instrument order, so a step's pushes walk
// memory sequentially; one that outgrows its slot moves to its own buffer.
const arenaCap = 16

// rehome moves the deques of a series into a new arena (after the
// instrument set changed): those that fit their slot are copied into it.
func rehome(dqs []mmDeque) {
	arena := make([]mmEntry, arenaCap*len(dqs))
	for i := range dqs {
		d := &dqs[i]
		if d.n > arenaCap || (len(d.buf) > arenaCap && d.n > arenaCap/2) {
			continue // keeps its own buffer
		}
		slot := arena[i*arenaCap : (i+1)*arenaCap : (i+1)*arenaCap]
		for j := range d.n {
			slot[j] = *d.at(j)
		}
		d.buf, d.head = slot, 0
	}
}

func (d *mmDeque) at(j uint32) *mmEntry { return &d.buf[(d.head+j)&uint32(len(d.buf)-1)] }

// push appends v at step t after dropping the entries it dominates (max:
// values <= v; min: values >= v, so the latest occurrence of an extreme is
// kept) and the entries older than span steps.
func (d *mmDeque) push(v float64, t, span uint32, isMax bool) {
	if isMax {
		for d.n > 0 && d.at(d.n-1).v <= v {
			d.n--
		}
	} else {
		for d.n > 0 && d.at(d.n-1).v >= v {
			d.n--
		}
	}
	for d.n > 0 && t-d.at(0).t >= span {
		d.head++
		d.n--
	}
	if int(d.n) == len(d.buf) {
		d.grow()
	}
	*d.at(d.n) = mmEntry{v, t}
	d.n++
}

func (d *mmDeque) grow() {
	nb := make([]mmEntry, max(4, 2*len(d.buf)))
	for j := range d.n {
		nb[j] = *d.at(j)
	}
	d.buf, d.head = nb, 0
}

// first returns the index of the first entry younger than w steps at step t,
// searching from j (the answer for a larger window): a few linear probes
// (deques are short for most data), then bisection, so O(log n) at worst.
// The back entry is always step t itself, so there is one.
func (d *mmDeque) first(t, w, j uint32) uint32 {
	mask := uint32(len(d.buf) - 1)
	for end := min(j+4, d.n-1); j < end; j++ {
		if t-d.buf[(d.head+j)&mask].t < w {
			return j
		}
	}
	lo, hi := j, d.n-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if t-d.buf[(d.head+mid)&mask].t >= w {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// bytes is the deque's buffer size (its arena slot or its own buffer).
func (d *mmDeque) bytes() int { return max(len(d.buf), arenaCap) * 16 }
