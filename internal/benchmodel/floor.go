// Package benchmodel holds what `amirotate bench` measures a rotation
// against: the shortest time the same work can take given EC2's request
// buckets and image latencies (the makespan floor), and the bill of a
// rotation at list prices, for amirotate and for the per-image design.
package benchmodel

import (
	"slices"
	"time"

	"github.com/amirotate/amirotate/internal/ec2limits"
)

// Work is the EC2 work of one rotation, and the latencies it waits on.
type Work struct {
	Instances   int // new source images, in the home region
	CopyRegions int // each source is copied into every one
	// DeletedPerRegion expired images are deregistered in every region,
	// each only once its instance's new images are all available (retention
	// never prunes an instance whose new image is not yet everywhere).
	DeletedPerRegion int
	// Deprecate: every new image gets EnableImageDeprecation.
	Deprecate bool
	// ImageDelay and CopyDelay: how long a new image and a copy stay
	// pending; MaxConcurrentCopies: how many copies a destination region
	// takes at once (ResourceLimitExceeded beyond).
	ImageDelay, CopyDelay time.Duration
	MaxConcurrentCopies   int
}

// MakespanFloor is the shortest time from the first call to the last
// needed one, if every mutating call the rotation needs (CreateImage,
// CopyImage, EnableImageDeprecation, DeregisterImage) were sent the moment
// its bucket (internal/ec2limits, starting full) and its inputs allowed:
// a copy once its source is available and the destination has room, a
// deregistration once its instance's new images are all available. Reads
// are left out: they only add to the time. The model serves each bucket in
// order of readiness, which no schedule beats for calls that are alike.
func MakespanFloor(w Work) time.Duration {
	if w.Instances <= 0 {
		return 0
	}
	sec := func(d time.Duration) float64 { return d.Seconds() }
	zero := make([]float64, w.Instances)
	creates := issue("CreateImage", zero, 0, 0)
	end := creates[len(creates)-1]

	sources := make([]float64, w.Instances) // available
	for i, c := range creates {
		sources[i] = c + sec(w.ImageDelay)
	}
	complete := slices.Clone(sources) // when every image of instance i is available
	var newPerRegion [][]float64      // when each new image of a region exists
	newPerRegion = append(newPerRegion, creates)
	for range w.CopyRegions {
		starts := issue("CopyImage", sources, w.MaxConcurrentCopies, sec(w.CopyDelay))
		newPerRegion = append(newPerRegion, starts)
		for i, s := range starts {
			done := s + sec(w.CopyDelay)
			complete[i] = max(complete[i], done)
			end = max(end, done)
		}
	}
	end = max(end, slices.Max(complete))
	for _, made := range newPerRegion {
		if w.Deprecate {
			dep := issue("EnableImageDeprecation", made, 0, 0)
			end = max(end, dep[len(dep)-1])
		}
		if w.DeletedPerRegion > 0 {
			ready := make([]float64, 0, w.DeletedPerRegion)
			for k := range w.DeletedPerRegion {
				ready = append(ready, complete[k*w.Instances/w.DeletedPerRegion])
			}
			slices.Sort(ready)
			del := issue("DeregisterImage", ready, 0, 0)
			end = max(end, del[len(del)-1])
		}
	}
	return time.Duration(end * float64(time.Second))
}

// issue returns the earliest times calls of action can be sent in one
// region, given the times they are ready (sorted), the action's token
// bucket, and at most concurrent calls' work in progress (each lasting
// busy seconds; 0 concurrent: no such limit).
func issue(action string, ready []float64, concurrent int, busy float64) []float64 {
	_, b := ec2limits.Request(action, false)
	out := make([]float64, len(ready))
	tokens, last := b.Capacity, 0.0
	for i, r := range ready {
		t := max(r, last)
		if concurrent > 0 && i >= concurrent {
			t = max(t, out[i-concurrent]+busy)
		}
		tokens = min(b.Capacity, tokens+(t-last)*b.Refill)
		if tokens < 1 {
			t += (1 - tokens) / b.Refill
			tokens = 1
		}
		tokens--
		out[i], last = t, t
	}
	return out
}
