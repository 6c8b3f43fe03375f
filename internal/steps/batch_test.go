package steps

import (
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

func TestNextWait_BacksOffAndCaps(t *testing.T) {
	now := testStart
	far := now.Add(24 * time.Hour)
	tests := []struct {
		name     string
		interval int
		polls    int
		due      time.Time
		want     int
	}{
		{"first wait is the interval", 60, 0, far, 60},
		{"grows by half", 60, 1, far, 90},
		{"grows again", 60, 2, far, 135},
		{"capped at 300", 60, 5, far, 300},
		{"small interval capped at 5x", 10, 20, far, 50},
		{"long interval is never shortened", 900, 3, far, 900},
		{"stops at the timeout", 60, 3, now.Add(30 * time.Second), 31},
		{"past the timeout polls at once", 60, 3, now.Add(-time.Minute), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rotation.Policy{PollIntervalSeconds: tt.interval}
			if got := nextWait(p, tt.polls, now, tt.due); got != tt.want {
				t.Errorf("nextWait = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRecount_ToCopyCountsMissingAndDeferredCopies(t *testing.T) {
	p := rotation.Policy{CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}, {Region: "ap-southeast-2"}}}
	b := Batch{Images: []rotation.Record{
		{InstanceID: "i-1", Region: "us-east-1", ImageID: "ami-1", State: rotation.StateAvailable},
		{InstanceID: "i-1", Region: "eu-west-1", ImageID: "ami-1e", SourceImageID: "ami-1", State: rotation.StatePending},
		{InstanceID: "i-1", Region: "ap-southeast-2", SourceImageID: "ami-1", State: rotation.StateDeferred},
		{InstanceID: "i-2", Region: "us-east-1", ImageID: "ami-2", State: rotation.StateAvailable},
		{InstanceID: "i-3", Region: "us-east-1", ImageID: "ami-3", State: rotation.StatePending},
		{InstanceID: "i-4", Region: "us-east-1", State: rotation.StateRefused},
		{InstanceID: "i-5", Region: "us-east-1", ImageID: "ami-5", State: rotation.StateFailed},
	}}
	recount(&b, p)
	if b.ToCopy != 3 { // i-1 ap-southeast-2 (deferred), i-2 both regions
		t.Errorf("ToCopy = %d, want 3", b.ToCopy)
	}
	if b.Pending != 2 {
		t.Errorf("Pending = %d, want 2", b.Pending)
	}
	want := map[string]int{"available": 2, "pending": 2, "deferred": 1, "refused": 1, "failed": 1}
	for k, v := range want {
		if b.Counts[k] != v {
			t.Errorf("Counts[%s] = %d, want %d (%v)", k, b.Counts[k], v, b.Counts)
		}
	}
	// Grouped by state: pending first, refused last.
	if b.Images[0].State != rotation.StatePending || b.Images[len(b.Images)-1].State != rotation.StateRefused {
		t.Errorf("records not grouped by state: %+v", b.Images)
	}
	for i := 1; i < len(b.Images); i++ {
		if order(b.Images[i-1].State) > order(b.Images[i].State) {
			t.Errorf("record %d out of order: %s after %s", i, b.Images[i].State, b.Images[i-1].State)
		}
	}
}

func TestRecount_DryRunPlansCopiesOfPlannedSources(t *testing.T) {
	p := rotation.Policy{DryRun: true, CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}}}
	b := Batch{Images: []rotation.Record{{InstanceID: "i-1", Region: "us-east-1", State: rotation.StatePlanned}}}
	recount(&b, p)
	if b.ToCopy != 1 {
		t.Errorf("ToCopy = %d, want 1", b.ToCopy)
	}
}

func TestWaitFor_WaitsOnlyForWhatIsInFlight(t *testing.T) {
	tests := []struct {
		name string
		b    Batch
		want int
	}{
		{"pending images", Batch{Pending: 2}, 60},
		{"copies to start", Batch{ToCopy: 1}, 60},
		{"deferred copies", Batch{Counts: map[string]int{rotation.StateDeferred: 1}}, 60},
		{"nothing in flight", Batch{Counts: map[string]int{rotation.StateRefused: 3}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := waitFor(tt.b, 60); got != tt.want {
				t.Errorf("waitFor = %d, want %d", got, tt.want)
			}
		})
	}
	if got := waitFor(Batch{Pending: 1}, 0); got != 1 {
		t.Errorf("waitFor with pending images = %d, want at least 1", got)
	}
}
