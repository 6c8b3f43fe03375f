package steps

import (
	"fmt"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Which instances and images a retention pass may touch.

// batchScope reads the batch's records. An instance is in scope when its
// source image and a copy in every copy region are available (planned, in a
// dry run); it is held when any of its records failed, timed out or
// errored. planned lists the images a dry run would have made, so the dry
// run's plan counts them as a real run would.
func batchScope(b Batch, home string) (scope map[string]bool, hold map[string]string, planned []rotation.Record) {
	done := map[string]map[string]bool{} // instance → regions with its new image
	hold = map[string]string{}
	ok := func(state string) bool {
		return state == rotation.StateAvailable || (b.Policy.DryRun && state == rotation.StatePlanned)
	}
	for _, rec := range b.Images {
		switch rec.State {
		case rotation.StateFailed, rotation.StateTimedOut, rotation.StateError:
			why := fmt.Sprintf("this rotation's image in %s is %s", rec.Region, rec.State)
			if rec.Error != "" {
				why += ": " + rec.Error
			}
			if _, dup := hold[rec.InstanceID]; !dup {
				hold[rec.InstanceID] = why
			}
			continue
		}
		if !ok(rec.State) {
			continue
		}
		if done[rec.InstanceID] == nil {
			done[rec.InstanceID] = map[string]bool{}
		}
		done[rec.InstanceID][rec.Region] = true
		if rec.State == rotation.StatePlanned {
			planned = append(planned, rec)
		}
	}
	scope = map[string]bool{}
	// Held instances are in scope so that the planner reports them as held
	// (it checks scope first); the hold keeps every image of theirs, and
	// region() enforces that again after planning.
	for id := range hold {
		scope[id] = true
	}
	regions := b.Policy.Regions(home)
	for id, got := range done {
		if _, held := hold[id]; held {
			continue
		}
		all := true
		for _, reg := range regions {
			all = all && got[reg]
		}
		if all {
			scope[id] = true
		}
	}
	return scope, hold, planned
}

// retentionJob is one retention pass: the batch's or the others'.
type retentionJob struct {
	policy rotation.Policy
	home   string
	now    time.Time
	// rotationID tags a dry run's stand-in images.
	rotationID string
	// instanceIDs narrows the listing (the batch's instances); nil lists
	// every image of the policy.
	instanceIDs []string
	scope       map[string]bool   // nil: every listed instance not in exclude
	exclude     map[string]bool   // others pass: this rotation's targets, neither pruned nor reported
	hold        map[string]string // instance → why nothing of it may go
	planned     []rotation.Record // dry run: images this rotation would have made
	// preview (amirotate plan): every instance listed in a region gets a
	// stand-in for the next rotation's image there, as planned does.
	preview bool
	// moved (preview) gives the references the next rotation's publish
	// moves from an instance's images in a region to its new one (its SSM
	// parameter, its tracked launch templates).
	moved func(region, instanceID string) []string
}
