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
