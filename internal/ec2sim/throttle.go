package ec2sim

import (
	"time"

	"github.com/amirotate/amirotate/internal/ec2limits"
)

// EC2 request throttling: token buckets per account and region, sized by
// ec2limits (EC2's documented table, which the client-side pacer in ec2x
// reads too). Each action has its own bucket, sized by its category or by a
// per-action figure; RunInstances and friends additionally draw from a
// resource bucket counted in instances.
// Buckets refill from the simulator's clock, so a manual clock controls
// recovery exactly.

// bucketCost is cost tokens taken from the region's bucket key.
type bucketCost struct {
	key  string
	spec ec2limits.Bucket
	cost float64
}

// ec2Buckets returns the buckets a call draws from.
func ec2Buckets(action string, p params) []bucketCost {
	unfiltered := !p.has("MaxResults") && len(p.indexes("Filter")) == 0 &&
		len(p.indexes("InstanceId")) == 0 && len(p.indexes("SnapshotId")) == 0
	key, spec := ec2limits.Request(action, unfiltered)
	out := []bucketCost{{key: key, spec: spec, cost: 1}}
	if key, rs, ok := ec2limits.Resource(action); ok {
		n := 1.0
		switch action {
		case "RunInstances":
			if v, ok, _ := p.integer("MaxCount"); ok && v > 0 {
				n = float64(v)
			}
		default:
			if ids := p.list("InstanceId"); len(ids) > 0 {
				n = float64(len(ids))
			}
		}
		out = append(out, bucketCost{key: key, spec: rs, cost: n})
	}
	return out
}

type bucket struct {
	tokens float64
	at     time.Time
}

// takeTokensLocked refills the buckets to now and takes the costs, all or
// nothing. It reports false when any bucket lacks tokens.
func (s *Sim) takeTokensLocked(r *region, costs []bucketCost) bool {
	now := s.Now()
	bs := make([]*bucket, len(costs))
	for i, c := range costs {
		b := r.buckets[c.key]
		if b == nil {
			b = &bucket{tokens: c.spec.Capacity, at: now}
			r.buckets[c.key] = b
		}
		if dt := now.Sub(b.at).Seconds(); dt > 0 {
			b.tokens = min(c.spec.Capacity, b.tokens+dt*c.spec.Refill)
			b.at = now
		}
		bs[i] = b
		if b.tokens < c.cost {
			return false
		}
	}
	for i, c := range costs {
		bs[i].tokens -= c.cost
	}
	return true
}
