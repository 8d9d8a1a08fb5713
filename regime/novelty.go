package regime

import (
	"math"
)

// novelty is a robust streaming Mahalanobis detector with a diagonal
// covariance: per feature an exponentially weighted mean and variance, whose
// updates use the deviation clipped at clip standard deviations (Huber), so
// that an outlier moves the estimate by at most alpha*clip*std and does not
// mask the next one. The score is the distance
//
//	D = sqrt( Σ_i z_i² ),  z_i = (x_i - mean_i) / std_i   (estimates before x)
//
// and feature i's share of it is z_i² / D². The diagonal form makes that
// attribution exact; correlated features count twice, which the threshold
// (chosen by `signald regime eval`) absorbs.
type novelty struct {
	d         int
	alpha     float64
	clip      float64
	minRelStd float64
	warmUp    int
	threshold float64
	rearm     float64
}

// noveltyState is one instrument's estimate; slices are allocated once.
type noveltyState struct {
	n     int
	mean  []float64
	vr    []float64
	z     []float64 // of the last observation
	score float64
	armed bool
}

func (nv *novelty) newState() noveltyState {
	return noveltyState{mean: make([]float64, nv.d), vr: make([]float64, nv.d), z: make([]float64, nv.d), armed: true}
}

// stdFloor keeps z finite and meaningful for a feature that has hardly
// varied yet (a spread pinned at one tick would otherwise score a one-tick
// widening in the tens of thousands): minRelStd times the mean's size, with an
// absolute floor for features centred on zero.
func (nv *novelty) stdFloor(mean float64) float64 { return nv.minRelStd*math.Abs(mean) + 1e-12 }

// step scores x (len d, all finite) against the estimate, then updates it.
// It reports an alarm when the score crosses the threshold while armed; the
// detector re-arms once the score falls below rearm, so one anomaly that
// lasts several steps gives one alarm. No alarm during the warm-up.
func (nv *novelty) step(s *noveltyState, x []float64) (alarm bool) {
	s.n++
	if s.n == 1 {
		for i := range nv.d {
			s.mean[i], s.vr[i], s.z[i] = x[i], 0, 0
		}
		s.score = 0
		return false
	}
	a := max(nv.alpha, 1/float64(s.n))
	warm := s.n > nv.warmUp
	d2 := 0.0
	for i := range nv.d {
		sd := max(math.Sqrt(s.vr[i]), nv.stdFloor(s.mean[i]))
		dev := x[i] - s.mean[i]
		z := min(max(dev/sd, -zCap), zCap)
		s.z[i] = z
		d2 += z * z
		if warm {
			// Huber: clip the deviation used for the update
			dev = min(max(dev, -nv.clip*sd), nv.clip*sd)
		}
		incr := a * dev
		s.mean[i] += incr
		s.vr[i] = (1 - a) * (s.vr[i] + dev*incr)
	}
	s.score = math.Sqrt(d2)
	if !warm {
		return false
	}
	if s.armed && s.score > nv.threshold {
		s.armed = false
		return true
	}
	if !s.armed && s.score < nv.rearm {
		s.armed = true
	}
	return false
}
