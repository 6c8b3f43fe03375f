//go:build linux && !race

// The race detector slows code down tenfold, which says nothing about the
// planner's complexity, so this guard runs without it only.

package rotation

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used. The guard below measures
// CPU, not wall-clock time, so that other processes on a busy machine (a
// parallel `make test`) cannot make it fail.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPlan_100kImagesWellUnderASecond guards the planner's complexity: a
// quadratic step would take minutes here. A plan of 100,000 images takes
// about 0.2 s of CPU; the bound leaves room for garbage collection.
func TestPlan_100kImagesWellUnderASecond(t *testing.T) {
	in := fleetInventory(100_000)
	start := cpuTime(t)
	ds := PlanRetention(in)
	d := cpuTime(t) - start
	t.Logf("100,000 images: %v of CPU", d)
	if d > 3*time.Second {
		t.Errorf("100,000 images took %v of CPU", d)
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
