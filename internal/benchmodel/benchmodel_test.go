package benchmodel

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The CopyImage bucket holds 100 calls and refills one a second; with
// every call ready at once, call k goes at k-99 s. A concurrency limit
// holds call k until call k-limit's work is done, and the bucket has
// refilled by then.
func TestIssue_TokenBucketAndConcurrency(t *testing.T) {
	ready := make([]float64, 250)
	got := issue("CopyImage", ready, 0, 0)
	for k, at := range got {
		if want := math.Max(0, float64(k-99)); !near(at, want) {
			t.Fatalf("call %d at %v s, want %v", k, at, want)
		}
	}
	got = issue("CopyImage", ready, 100, 1000)
	for k, want := range map[int]float64{0: 0, 99: 0, 100: 1000, 199: 1000, 200: 2000, 249: 2000} {
		if !near(got[k], want) {
			t.Errorf("with 100 at a time: call %d at %v s, want %v", k, got[k], want)
		}
	}
	// CreateImage is a mutating call: 50 at once, then 5 a second.
	got = issue("CreateImage", make([]float64, 60), 0, 0)
	if !near(got[49], 0) || !near(got[50], 0.2) || !near(got[59], 2) {
		t.Errorf("CreateImage: call 49 at %v, 50 at %v, 59 at %v; want 0, 0.2, 2", got[49], got[50], got[59])
	}
}

func TestMakespanFloor(t *testing.T) {
	// 50 instances fit every bucket's burst: the floor is the latencies,
	// a source (2 min) then its copy (4 min); the old images go right after.
	small := Work{Instances: 50, CopyRegions: 2, DeletedPerRegion: 50, Deprecate: true,
		ImageDelay: 2 * time.Minute, CopyDelay: 4 * time.Minute, MaxConcurrentCopies: 300}
	if got := MakespanFloor(small); got != 6*time.Minute {
		t.Errorf("50 instances: floor %v, want 6m0s", got)
	}
	// Without copies, 60 sources: the 60th CreateImage waits 2 s for a token.
	if got := MakespanFloor(Work{Instances: 60, ImageDelay: time.Minute}); got != 62*time.Second {
		t.Errorf("60 instances, no copies: floor %v, want 1m2s", got)
	}
	// 1,000 instances copied into one region: CopyImage's 1/s refill
	// dominates, about 900 s past the burst of 100, then the last copy's 4 min.
	big := small
	big.Instances, big.CopyRegions, big.DeletedPerRegion = 1000, 1, 1000
	got := MakespanFloor(big).Seconds()
	if got < 120+880+240 || got > 120+910+240 {
		t.Errorf("1,000 instances: floor %.0f s, want about %d", got, 120+900+240)
	}
	// More regions copy in parallel (a bucket per region): same floor.
	big.CopyRegions = 2
	if two := MakespanFloor(big).Seconds(); !near(two, got) {
		t.Errorf("two copy regions: %.1f s, one: %.1f s", two, got)
	}
	if MakespanFloor(Work{}) != 0 {
		t.Error("no work takes no time")
	}
}

func TestBill_ByService(t *testing.T) {
	p := Prices{StateTransition: 0.025 / 1000, LambdaGBSecond: 0.0000133334, LambdaRequest: 0.2 / 1e6,
		EventBridgeEvent: 1e-6, SchedulerInvocation: 1e-6, LogsGB: 0.5}
	b := p.Bill(Usage{
		Transitions: 4000,
		Lambda: map[string]LambdaUse{
			"a": {Invocations: 1000, Seconds: 1024, MemoryMB: 512},
			"b": {Invocations: 1000, Seconds: 100, MemoryMB: 1024},
		},
		Events: 2, Schedules: 1, LogBytes: 2 << 30,
	})
	want := Bill{StepFunctions: 0.1, LambdaRequests: 0.0004, LambdaDuration: (512 + 100) * 0.0000133334,
		EventBridge: 3e-6, Logs: 1}
	want.Total = want.StepFunctions + want.LambdaRequests + want.LambdaDuration + want.EventBridge + want.Logs
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"step functions", b.StepFunctions, want.StepFunctions}, {"lambda requests", b.LambdaRequests, want.LambdaRequests},
		{"lambda duration", b.LambdaDuration, want.LambdaDuration}, {"eventbridge", b.EventBridge, want.EventBridge},
		{"logs", b.Logs, want.Logs}, {"total", b.Total, want.Total}, {"per 1,000 of 4,000", b.Scale(0.25).Total, want.Total / 4}} {
		if !near(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// One source (2 min pending) and one copy (4 min) through the per-image
// design, counted by hand: the source's execution polls 8 times (every
// 15 s), the copy's 16.
func TestPerImageDesign_CountsEveryState(t *testing.T) {
	c := DefaultPerImageDesign.Usage(Work{Instances: 1, CopyRegions: 1, ImageDelay: 2 * time.Minute, CopyDelay: 4 * time.Minute})
	// Source: Start, 8 × (Wait, Check, Available?), 4 Tasks, Done = 30
	// transitions, 13 Tasks; copy: 1 + 48 + 4 + 1 = 54, 21 Tasks.
	if c.Executions != 2 || c.Usage.Transitions != 30+54 {
		t.Errorf("executions %d, transitions %d; want 2, 84", c.Executions, c.Usage.Transitions)
	}
	l := c.Usage.Lambda["per-image"]
	if l.Invocations != 13+21+1 || !near(l.Seconds, 3.5) || l.MemoryMB != 128 {
		t.Errorf("lambda %+v; want 35 invocations, 3.5 s at 128 MB", l)
	}
	// The copy's history: started, succeeded, 21 Tasks × 5, 16 Waits and
	// 16 Choices × 2, Done × 2.
	if c.HistoryEvents != 2+105+64+2 {
		t.Errorf("history events %d, want 173", c.HistoryEvents)
	}
	// Calls: create or copy, each check, two CreateTags, the deprecation,
	// a describe and a deregistration.
	if c.EC2Calls != (1+8+5)+(1+16+5) {
		t.Errorf("EC2 calls %d, want 36", c.EC2Calls)
	}
}
