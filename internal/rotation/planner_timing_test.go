//go:build !race

// The race detector slows code down tenfold, which says nothing about the
// planner's complexity, so this guard runs without it only.

package rotation

import (
	"testing"
	"time"
)

// TestPlan_100kImagesWellUnderASecond guards the planner's complexity: a
// quadratic step would take minutes here. It takes about 0.2 s of CPU;
// the bound leaves room for a loaded machine.
func TestPlan_100kImagesWellUnderASecond(t *testing.T) {
	in := fleetInventory(100_000)
	start := time.Now()
	ds := PlanRetention(in)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100,000 images took %v", d)
	}
	deleted := 0
	for _, d := range ds {
		if d.Delete {
			deleted++
		}
	}
	if deleted == 0 || deleted == len(ds) {
		t.Errorf("%d of %d deleted: the inventory does not exercise the planner", deleted, len(ds))
	}
}
