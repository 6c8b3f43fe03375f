// Package ec2limits holds EC2's documented API request throttling as data:
// token buckets per account, region and action. The simulator enforces them
// server-side and ec2x paces its calls by them client-side, so both read the
// one table here.
//
// Source: https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
//
// Each API action is evaluated on its own: a call takes one token from the
// bucket of its action, sized by the action's category unless the action
// has figures of its own. A few actions also take tokens from a resource
// bucket counted in instances.
package ec2limits

import "strings"

// Bucket is a token bucket: it holds at most Capacity tokens (the burst) and
// gains Refill tokens per second.
type Bucket struct {
	Capacity float64
	Refill   float64
}

// Category buckets.
var (
	// NonMutating: Describe*, List*, Get*, Search*.
	NonMutating = Bucket{100, 20}
	// UnfilteredNonMutating: the actions in Unfiltered when called without
	// filters, ids or pagination.
	UnfilteredNonMutating = Bucket{50, 10}
	// Mutating is every other action without figures of its own
	// (CreateImage, EnableImageDeprecation, DisableImage, ...).
	Mutating = Bucket{50, 5}
	// ResourceIntensive: AuthorizeSecurityGroupIngress, CreateKeyPair,
	// RequestSpotInstances, ... (the same figures as Mutating).
	ResourceIntensive = Bucket{50, 5}
	// ConsoleNonMutating applies to the EC2 console's own calls, never to
	// an API client; listed for completeness.
	ConsoleNonMutating = Bucket{100, 10}
)

// PerAction are the actions with request buckets of their own.
var PerAction = map[string]Bucket{
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

// ResourceBuckets are counted in instances, not requests: a call takes one
// token per instance it affects, on top of its request token.
var ResourceBuckets = map[string]Bucket{
	"RunInstances":       {1000, 2},
	"TerminateInstances": {1000, 20},
	"StartInstances":     {1000, 2},
	"StopInstances":      {1000, 20},
}

// Unfiltered are the non-mutating actions that draw from the smaller
// UnfilteredNonMutating bucket when called without filters, ids or
// pagination.
var Unfiltered = map[string]bool{
	"DescribeInstances":            true,
	"DescribeInstanceStatus":       true,
	"DescribeNetworkInterfaces":    true,
	"DescribeSecurityGroups":       true,
	"DescribeSnapshots":            true,
	"DescribeSpotInstanceRequests": true,
	"DescribeVolumes":              true,
}

var resourceIntensive = map[string]bool{
	"AuthorizeSecurityGroupIngress": true,
	"CreateKeyPair":                 true,
	"RequestSpotInstances":          true,
}

// Request returns the request bucket a call of action takes a token from:
// a key naming the bucket within a region, and its size. unfiltered says the
// call has no filters, ids or pagination; it matters only for the actions in
// Unfiltered, whose unfiltered calls have a smaller bucket of their own.
func Request(action string, unfiltered bool) (key string, b Bucket) {
	if b, ok := PerAction[action]; ok {
		return action, b
	}
	switch {
	case unfiltered && Unfiltered[action]:
		return action + "/unfiltered", UnfilteredNonMutating
	case IsNonMutating(action):
		return action, NonMutating
	case resourceIntensive[action]:
		return action, ResourceIntensive
	}
	return action, Mutating
}

// Resource returns the resource bucket of action, if it has one.
func Resource(action string) (key string, b Bucket, ok bool) {
	b, ok = ResourceBuckets[action]
	return action + "/instances", b, ok
}

// IsNonMutating reports whether action is in the non-mutating category.
func IsNonMutating(action string) bool {
	for _, p := range []string{"Describe", "List", "Get", "Search"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}
