package ec2sim

import (
	"sync"
	"time"
)

// Clock is the simulator's source of time. Every state transition (images
// becoming available, snapshots completing, throttle buckets refilling) is
// evaluated lazily against it on the next request, so a manual clock drives
// the simulator completely without goroutines or sleeps.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now().UTC() }

// RealClock returns the wall clock (UTC).
func RealClock() Clock { return realClock{} }

// ManualClock is a Clock that only moves when told to. Safe for concurrent use.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock returns a manual clock set to start (UTC).
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{t: start.UTC()}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d (negative d is ignored: time never
// runs backwards for the simulator).
func (c *ManualClock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t if t is later than the current time.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t.UTC()
	}
	c.mu.Unlock()
}

// AdjustableClock is a Clock that POST /_sim/clock may move forward.
type AdjustableClock interface {
	Clock
	Advance(d time.Duration)
	Set(t time.Time)
}

// ShiftedClock is the wall clock moved forward by an offset that only
// grows: time runs on as usual, and a test or a person can still skip a
// day (the local stack, whose schedules fire on the simulator's clock while
// its images become available in seconds). Safe for concurrent use.
type ShiftedClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// NewShiftedClock returns the wall clock, not shifted yet.
func NewShiftedClock() *ShiftedClock { return &ShiftedClock{} }

// Now returns the wall time plus the offset (UTC).
func (c *ShiftedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.offset)
}

// Advance moves the clock forward by d (negative d is ignored).
func (c *ShiftedClock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Set moves the clock to t if t is later than now.
func (c *ShiftedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := t.Sub(time.Now().UTC().Add(c.offset)); d > 0 {
		c.offset += d
	}
}
