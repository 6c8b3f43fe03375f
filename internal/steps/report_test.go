package steps

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

func reportBatch() Batch {
	return Batch{
		Policy:      rotation.Policy{Name: "web", CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}}},
		Rotation:    rotation.Rotation{ID: "20261125T0300Z", Home: "us-east-1", Trigger: rotation.TriggerSchedule},
		InstanceIDs: []string{"i-ok", "i-failed", "i-nocopy", "i-copyfailed"},
		Images: []rotation.Record{
			{InstanceID: "i-ok", Region: "us-east-1", ImageID: "ami-1", State: rotation.StateAvailable, SizeGiB: 28},
			{InstanceID: "i-ok", Region: "eu-west-1", ImageID: "ami-2", SourceImageID: "ami-1", State: rotation.StateAvailable, SizeGiB: 28},
			{InstanceID: "i-failed", Region: "us-east-1", ImageID: "ami-3", State: rotation.StateFailed, Error: "Client.InternalError: snapshot failed", SizeGiB: 100},
			{InstanceID: "i-nocopy", Region: "us-east-1", ImageID: "ami-4", State: rotation.StateAvailable, SizeGiB: 8},
			{InstanceID: "i-copyfailed", Region: "us-east-1", ImageID: "ami-5", State: rotation.StateAvailable, SizeGiB: 8},
			{InstanceID: "i-copyfailed", Region: "eu-west-1", ImageID: "ami-6", SourceImageID: "ami-5", State: rotation.StateTimedOut},
		},
		Retention: []rotation.ScopeReport{{InstanceID: "i-ok", Region: "us-east-1", Deleted: []string{"ami-old"}, SnapshotsDeleted: 2, GiBFreed: 28}},
		Published: []Publication{{InstanceID: "i-ok", Region: "us-east-1", ImageID: "ami-1", Changed: true}},
	}
}

func TestReport_BatchResultNamesEveryInstanceThatIsNotOK(t *testing.T) {
	res := BatchResultOf(reportBatch())
	want := map[string]int{OutcomeOK: 1, OutcomeFailed: 1, OutcomeError: 1, OutcomeTimedOut: 1}
	for o, n := range want {
		if res.Outcomes[o] != n {
			t.Errorf("outcome %s = %d, want %d (all: %v)", o, res.Outcomes[o], n, res.Outcomes)
		}
	}
	got := map[string]string{}
	for _, p := range res.Problems {
		got[p.InstanceID] = p.Outcome + "@" + p.Region
	}
	wantProblems := map[string]string{
		"i-failed":     "failed@us-east-1",
		"i-nocopy":     "error@eu-west-1",
		"i-copyfailed": "timed-out@eu-west-1",
	}
	for id, w := range wantProblems {
		if got[id] != w {
			t.Errorf("problem of %s = %q, want %q", id, got[id], w)
		}
	}
	if res.ImagesCreated != 3 || res.CopiesCreated != 1 || res.ImagesDeleted != 1 || res.SnapshotsDeleted != 2 || res.Published != 1 {
		t.Errorf("counts = %+v", res)
	}
}

func TestReport_StepErrorMakesUnfinishedInstancesErrors(t *testing.T) {
	b := reportBatch()
	b.Images = b.Images[:2] // only i-ok got its images before a later step failed
	b.Error = &StepError{Error: "RetryableError", Cause: "DescribeImages: throttled"}
	res := BatchResultOf(b)
	// i-ok has its images, but tag/publish/retention did not finish for it.
	if res.Outcomes[OutcomeError] != 4 {
		t.Fatalf("outcomes = %v, want 4 errors", res.Outcomes)
	}
	if !strings.Contains(res.Error, "RetryableError") {
		t.Errorf("batch error = %q", res.Error)
	}
}

func TestReport_SummaryFailsWhenAnythingFailed(t *testing.T) {
	ok := BatchResult{Instances: 2, Outcomes: map[string]int{OutcomeOK: 2}, ImagesCreated: 2}
	bad := BatchResultOf(reportBatch())
	rot := rotation.Rotation{ID: "20261125T0300Z", Trigger: rotation.TriggerSchedule}
	pol := rotation.Policy{Name: "web"}
	tests := []struct {
		name       string
		in         ReportIn
		wantFailed bool
		wantCause  string
	}{
		{"all ok", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok, ok}}, false, ""},
		{"one batch with problems", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok, bad}}, true, "3 of 6 instances not rotated"},
		{"refused instance", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok},
			Refused: []rotation.Record{{InstanceID: "i-x", State: rotation.StateRefused, Error: "does not match"}}}, true, "1 refused"},
		{"retention failure in others pass", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok},
			Others: &RetentionOthersOut{Retention: []rotation.ScopeReport{{Failed: map[string]string{"ami-1": "boom"}}}}}, true, "retention could not delete 1"},
		{"orphan snapshot not deleted", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok},
			Others: &RetentionOthersOut{OrphansFailed: map[string]string{"snap-1": "boom"}}}, true, "retention could not delete 1"},
		{"failed batch", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{{Instances: 1, Outcomes: map[string]int{OutcomeError: 1}, Error: "FatalError: denied"}}}, true, "1 steps failed"},
		{"others pass failed", ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{ok},
			OthersError: &StepError{Error: "RetryableError", Cause: "throttled"}}, true, "retention of other instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(tt.in)
			if s.Failed != tt.wantFailed {
				t.Fatalf("failed = %v, want %v (%+v)", s.Failed, tt.wantFailed, s)
			}
			if !strings.Contains(s.Cause, tt.wantCause) {
				t.Errorf("cause = %q, want it to contain %q", s.Cause, tt.wantCause)
			}
		})
	}
}

func TestReport_HandleAnswersBothShapes(t *testing.T) {
	b := reportBatch()
	out, err := Report{}.Handle(context.Background(), ReportIn{Batch: &b})
	if err != nil {
		t.Fatal(err)
	}
	var res BatchResult
	if err := json.Unmarshal(out, &res); err != nil || res.Instances != 4 {
		t.Fatalf("batch result %s: %v", out, err)
	}
	rot, pol := b.Rotation, b.Policy
	out, err = Report{}.Handle(context.Background(), ReportIn{Rotation: &rot, Policy: &pol, Results: []BatchResult{res}})
	if err != nil {
		t.Fatal(err)
	}
	var ro ReportOut
	if err := json.Unmarshal(out, &ro); err != nil || !ro.Summary.Failed {
		t.Fatalf("summary %s: %v", out, err)
	}
	if _, err := (Report{}).Handle(context.Background(), ReportIn{}); err == nil {
		t.Fatal("empty input: want an InvalidInputError")
	}
}

// TestReport_NeverSaysOKWhenAStepFailedForTheInstance: an image that is
// available but could not be shared, deprecated or marked latest, or whose
// publication failed, is an error, and the rotation fails.
func TestReport_NeverSaysOKWhenAStepFailedForTheInstance(t *testing.T) {
	for name, spoil := range map[string]func(*Batch){
		"share failed": func(b *Batch) { b.Images[0].Error = "sharing image: UnauthorizedOperation" },
		"copy deprecation failed": func(b *Batch) {
			b.Images[1].Error = "setting deprecation: InvalidParameter"
		},
		"publish failed": func(b *Batch) { b.Published[0].Error = "ssm: AccessDeniedException" },
	} {
		t.Run(name, func(t *testing.T) {
			b := reportBatch()
			spoil(&b)
			if o, _, why := InstanceOutcome(b, "i-ok"); o != OutcomeError || why == "" {
				t.Errorf("outcome %q (%s); want %q with the reason", o, why, OutcomeError)
			}
			s := Summarize(ReportIn{Rotation: &b.Rotation, Policy: &b.Policy, Results: []BatchResult{BatchResultOf(b)}})
			if !s.Failed || s.Outcomes[OutcomeOK] != 0 {
				t.Errorf("summary failed=%v outcomes %v; want failed and no ok", s.Failed, s.Outcomes)
			}
		})
	}
}

// TestReport_ARunThatMatchedNoInstanceFails: a selector with a typo must
// not end SUCCEEDED with 0 instances.
func TestReport_ARunThatMatchedNoInstanceFails(t *testing.T) {
	rot := rotation.Rotation{ID: "20261125T0300Z", Trigger: rotation.TriggerSchedule}
	pol := rotation.Policy{Name: "web", Retention: rotation.Retention{Keep: 1}}
	s := Summarize(ReportIn{Rotation: &rot, Policy: &pol})
	if !s.Failed || !strings.Contains(s.Cause, "matched no instance") {
		t.Errorf("summary failed=%v cause %q; want failed, naming the empty selection", s.Failed, s.Cause)
	}
}

// TestReport_OthersPassErrorAfterDeletionsIsCountedAndFails: what the pass
// over other instances deleted before failing is counted, and the rotation
// fails.
func TestReport_OthersPassErrorAfterDeletionsIsCountedAndFails(t *testing.T) {
	b := reportBatch()
	b.Images, b.InstanceIDs, b.Published = b.Images[:2], []string{"i-ok"}, nil
	others := &RetentionOthersOut{
		Retention: []rotation.ScopeReport{{InstanceID: "i-0000000b", Region: "eu-west-1", Deleted: []string{"ami-x", "ami-y"}, SnapshotsDeleted: 2}},
		Error:     &StepError{Error: "RetryableError", Cause: "orphan sweep in us-east-1: throttled"},
	}
	s := Summarize(ReportIn{Rotation: &b.Rotation, Policy: &b.Policy, Results: []BatchResult{BatchResultOf(b)}, Others: others})
	if s.ImagesDeleted != 3 || !s.Failed || !strings.Contains(s.Cause, "orphan sweep") {
		t.Errorf("summary deleted %d failed=%v cause %q; want 3 deleted (1 + 2) and failed", s.ImagesDeleted, s.Failed, s.Cause)
	}
}

// TestReport_CostOfTheStorageAddedAndFreed: the summary adds up the new
// images' sizes (available ones only) and the storage retention freed, per
// region, and prices the regions whose list price is known; the others are
// named, not guessed.
func TestReport_CostOfTheStorageAddedAndFreed(t *testing.T) {
	b := reportBatch()
	others := &RetentionOthersOut{Retention: []rotation.ScopeReport{{InstanceID: "i-gone", Region: "eu-west-1", Deleted: []string{"ami-x"}, GiBFreed: 50}}}
	s := Summarize(ReportIn{Rotation: &b.Rotation, Policy: &b.Policy, Results: []BatchResult{BatchResultOf(b)}, Others: others})
	c := s.Cost
	if c.GiBAdded != 28+28+8+8 || c.GiBFreed != 28+50 {
		t.Errorf("added %d GiB, freed %d; want 72 and 78", c.GiBAdded, c.GiBFreed)
	}
	// us-east-1 at $0.05/GB-month: 44 GiB added, 28 freed; eu-west-1 has no
	// price in the table.
	if c.MonthlyUSDAdded != 2.2 || c.MonthlyUSDFreed != 1.4 || !slices.Equal(c.Priced, []string{"us-east-1"}) || !slices.Equal(c.Unpriced, []string{"eu-west-1"}) {
		t.Errorf("cost %+v", c)
	}
	if c.PriceSource == "" || c.PriceDate == "" {
		t.Errorf("the estimate does not cite its prices: %+v", c)
	}
}
