package features

import (
	"fmt"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Defaults for the zero values of Config.
const (
	DefaultStep            = time.Second
	DefaultAllowedLateness = 2 * time.Second
)

// DefaultWindows are the rolling windows, in steps, used when Config.Windows
// is empty.
var DefaultWindows = []int{5, 15, 60, 300, 900}

// Limits that keep per-instrument state bounded.
const (
	// MaxWindow is the largest rolling window, in steps. The ring buffers
	// cost 8 bytes per base series, instrument and step of the largest window.
	MaxWindow = 1 << 17
	// MaxLatenessSteps bounds AllowedLateness/Step: every open step costs one
	// accumulator per instrument.
	MaxLatenessSteps = 256
)

// Config configures an Engine. The zero value of each field selects its
// default.
// Defaults of the clock guard (Config.MaxClockJump, ClockJumpConfirm,
// MinRecvTime).
var (
	DefaultMaxClockJump     = time.Hour
	DefaultClockJumpConfirm = 64
	DefaultMinRecvTime      = time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
)

type Config struct {
	// Step is the step length; default 1s.
	Step time.Duration
	// Windows are the rolling windows in steps, each >= 2 and distinct;
	// default {5, 15, 60, 300, 900}. Columns follow this order.
	Windows []int
	// XRank lists the columns ranked across the step's instruments, each
	// giving a column "<name>_xrank"; default DefaultXRank (those of its
	// columns whose window is configured).
	XRank []string
	// AllowedLateness is how long after its end a step stays open for late
	// ticks: step k closes once the clock (the largest RecvTS seen) reaches
	// (k+1)*Step + AllowedLateness. Default 2s; it cannot be zero (use 1ns for
	// practically none).
	AllowedLateness time.Duration
	// MaxClockJump bounds how far one tick may move the clock forward: a
	// tick whose RecvTS is more than this past the clock (a frame stamped
	// years ahead) is held, and the clock moves only once ClockJumpConfirm
	// ticks in a row agree on the new time (a replay that goes on at a later
	// day); otherwise the held ticks are quarantined: counted
	// (invalid_ticks_total{reason="clock_jump"}), logged, not featured.
	// Default 1h; negative turns the guard off.
	MaxClockJump time.Duration
	// ClockJumpConfirm is how many ticks confirm a jump. Default 64.
	ClockJumpConfirm int
	// MinRecvTime is the earliest RecvTS accepted; earlier ticks are
	// counted (reason "before_min_time") and skipped. Default 2010-01-01 UTC.
	MinRecvTime time.Time
	// Allocator allocates the emitted records; default memory.DefaultAllocator
	// behind a recycler that hands a released record's feature buffer (~12 MB
	// for 1,000 instruments) to the next step instead of allocating it again.
	Allocator memory.Allocator
}

// withDefaults returns a copy of c with the defaults filled in and validates it.
func (c Config) withDefaults() (Config, error) {
	if c.Step == 0 {
		c.Step = DefaultStep
	}
	if c.Step < 0 {
		return c, fmt.Errorf("features: step %v: must be > 0", c.Step)
	}
	if len(c.Windows) == 0 {
		c.Windows = DefaultWindows
	}
	c.Windows = append([]int(nil), c.Windows...)
	c.XRank = append([]string(nil), c.XRank...)
	for i, w := range c.Windows {
		if w < 2 {
			return c, fmt.Errorf("features: window %d: must be >= 2, got %d", i, w)
		}
		if w > MaxWindow {
			return c, fmt.Errorf("features: window %d: must be <= %d, got %d", i, MaxWindow, w)
		}
		for j := range i {
			if c.Windows[j] == w {
				return c, fmt.Errorf("features: window %d: %d duplicates window %d", i, w, j)
			}
		}
	}
	if c.AllowedLateness == 0 {
		c.AllowedLateness = DefaultAllowedLateness
	}
	if c.AllowedLateness < 0 {
		return c, fmt.Errorf("features: allowed lateness %v: must be >= 0", c.AllowedLateness)
	}
	if n := (c.AllowedLateness + c.Step - 1) / c.Step; n > MaxLatenessSteps {
		return c, fmt.Errorf("features: allowed lateness %v is %d steps of %v: must be <= %d steps",
			c.AllowedLateness, n, c.Step, MaxLatenessSteps)
	}
	if c.MaxClockJump == 0 {
		c.MaxClockJump = DefaultMaxClockJump
	}
	if c.ClockJumpConfirm <= 0 {
		c.ClockJumpConfirm = DefaultClockJumpConfirm
	}
	if c.MinRecvTime.IsZero() {
		c.MinRecvTime = DefaultMinRecvTime
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	return c, nil
}

func (c Config) maxWindow() int {
	m := 0
	for _, w := range c.Windows {
		m = max(m, w)
	}
	return m
}

// openSlots is the largest number of steps that can be open at once.
func (c Config) openSlots() int {
	return int((c.AllowedLateness+c.Step-1)/c.Step) + 1
}
