package ec2sim

import (
	"strings"
	"time"
)

// EC2 request throttling: token buckets per account and region, sized as
// the EC2 API throttling documentation gives them. Each action has its own
// bucket, sized by its category or by a per-action figure; RunInstances and
// friends additionally draw from a resource bucket counted in instances.
// Buckets refill from the simulator's clock, so a manual clock controls
// recovery exactly.

type bucketSpec struct {
	Max    float64
	Refill float64 // tokens per second
}

var (
	nonMutating           = bucketSpec{100, 20}
	unfilteredNonMutating = bucketSpec{50, 10}
	mutating              = bucketSpec{50, 5}
)

// perAction overrides the category for actions with their own figures.
var perAction = map[string]bucketSpec{
	"CopyImage":                   {100, 1},
	"CreateTags":                  {100, 10},
	"DeleteTags":                  {100, 10},
	"DeregisterImage":             {100, 5},
	"DeleteSnapshot":              {100, 5},
	"CreateSnapshot":              {100, 5},
	"CreateSnapshots":             {100, 5},
	"CreateLaunchTemplateVersion": {100, 5},
	"ModifyLaunchTemplate":        {100, 5},
	"ModifyImageAttribute":        {100, 5},
	"ModifySnapshotAttribute":     {100, 5},
	"TerminateInstances":          {100, 5},
	"RunInstances":                {5, 2},
	"StartInstances":              {5, 2},
}

// resourceBuckets are counted in instances, not requests.
var resourceBuckets = map[string]bucketSpec{
	"RunInstances":       {1000, 2},
	"TerminateInstances": {1000, 20},
	"StartInstances":     {1000, 2},
	"StopInstances":      {1000, 20},
}

// unfilteredActions draw from the smaller bucket when called without
// filters, ids or pagination.
var unfilteredActions = set("DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces",
	"DescribeSecurityGroups", "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes")

type bucketCost struct {
	key  string
	spec bucketSpec
	cost float64
}

func isNonMutating(action string) bool {
	for _, p := range []string{"Describe", "List", "Get", "Search"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

// ec2Buckets returns the buckets a call draws from.
func ec2Buckets(action string, p params) []bucketCost {
	spec, ok := perAction[action]
	key := action
	if !ok {
		switch {
		case unfilteredActions[action] && !p.has("MaxResults") && len(p.indexes("Filter")) == 0 &&
			len(p.indexes("InstanceId")) == 0 && len(p.indexes("SnapshotId")) == 0:
			spec, key = unfilteredNonMutating, action+"/unfiltered"
		case isNonMutating(action):
			spec = nonMutating
		default:
			spec = mutating
		}
	}
	out := []bucketCost{{key: key, spec: spec, cost: 1}}
	if rs, ok := resourceBuckets[action]; ok {
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
		out = append(out, bucketCost{key: action + "/instances", spec: rs, cost: n})
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
			b = &bucket{tokens: c.spec.Max, at: now}
			r.buckets[c.key] = b
		}
		if dt := now.Sub(b.at).Seconds(); dt > 0 {
			b.tokens = min(c.spec.Max, b.tokens+dt*c.spec.Refill)
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
