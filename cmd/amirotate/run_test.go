package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

func TestParseRunFlags(t *testing.T) {
	now := time.Date(2026, 11, 25, 3, 7, 42, 0, time.UTC)
	c, err := parseRunFlags([]string{"--policy", "p.json", "--instance", "i-1", "--instance", "i-2", "--dry-run"}, io.Discard, now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.rotationTime.Equal(now.Truncate(time.Minute)) || len(c.instances) != 2 || !c.dryRun {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range [][]string{
		{}, // no policy
		{"--policy", "p.json", "--rotation-time", "yesterday"},
		{"--policy", "p.json", "extra"},
	} {
		if _, err := parseRunFlags(bad, io.Discard, now); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestBatchRows_JoinImagesPublicationsAndRetention(t *testing.T) {
	b := steps.Batch{
		Policy:      rotation.Policy{Name: "web", CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}}},
		Rotation:    rotation.Rotation{ID: "20261125T0300Z", Home: "us-east-1"},
		InstanceIDs: []string{"i-1"},
		Images: []rotation.Record{
			{InstanceID: "i-1", Region: "us-east-1", ImageID: "ami-new", State: rotation.StateAvailable},
			{InstanceID: "i-1", Region: "eu-west-1", ImageID: "ami-copy", SourceImageID: "ami-new", State: rotation.StateAvailable},
		},
		Published: []steps.Publication{{InstanceID: "i-1", Region: "us-east-1", SSMParameter: "/p", LaunchTemplates: []steps.LaunchTemplateUsed{{ID: "lt-1", Version: 3}}}},
		Retention: []rotation.ScopeReport{{InstanceID: "i-1", Region: "us-east-1", Deleted: []string{"ami-old"}, Kept: map[string]string{"ami-new": "newest"}}},
	}
	rep := &rotationReport{Summary: steps.Summary{Policy: "web", Rotation: "20261125T0300Z"}, Rows: batchRows(b)}
	if len(rep.Rows) != 2 {
		t.Fatalf("rows = %+v, want one per region", rep.Rows)
	}
	var out bytes.Buffer
	printReport(&out, rep, 0)
	for _, want := range []string{"ami-copy (copy)", "ssm:/p lt-1:v3", "deleted ami-old; kept ami-new (newest)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLowerBound_CountsOnlyWhatThePolicyAsks(t *testing.T) {
	s := steps.Summary{ImagesCreated: 10, CopiesCreated: 20, ImagesDeleted: 30}
	lb := lowerBound(rotation.Policy{}, s)
	if sum(lb) != 60 || lb["EnableImageDeprecation"] != 0 {
		t.Errorf("no deprecation, no sharing: %v", lb)
	}
	lb = lowerBound(rotation.Policy{DeprecateAfterDays: 7, ShareWith: []string{"111122223333"}}, s)
	if lb["EnableImageDeprecation"] != 30 || lb["ModifyImageAttribute"] != 30 || sum(lb) != 120 {
		t.Errorf("deprecation and sharing: %v", lb)
	}
}
