package rotation

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var execStart = time.Date(2026, 11, 25, 14, 42, 5, 0, time.UTC)

func TestParseInput_Fixtures(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	tests := []struct {
		file      string
		trigger   string
		rotation  string
		time      time.Time
		instances []string
		region    string
	}{
		{"input-schedule.json", TriggerSchedule, "20261125T0300Z", utc("2026-11-25T03:00:00Z"), nil, ""},
		{"input-tag-change.json", TriggerTagChange, "20261125T1441Z", utc("2026-11-25T14:41:00Z"), []string{"i-0123456789abcdef0"}, "us-east-1"},
		{"input-tag-change-int-version.json", TriggerTagChange, "20261125T1441Z", utc("2026-11-25T14:41:00Z"), []string{"i-0123456789abcdef0"}, "us-east-1"},
		{"input-manual.json", TriggerManual, "20261125T0817Z", utc("2026-11-25T08:17:00Z"), []string{"i-0123456789abcdef0", "i-12345678"}, ""},
		{"input-manual-all.json", TriggerManual, "20261125T1442Z", utc("2026-11-25T14:42:00Z"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			in, err := ParseInput(readFixture(t, tt.file), execStart)
			if err != nil {
				t.Fatalf("ParseInput: %v", err)
			}
			want := Rotation{ID: tt.rotation, Time: tt.time, Trigger: tt.trigger, StartedAt: execStart}
			if !reflect.DeepEqual(in.Rotation, want) {
				t.Errorf("rotation = %+v, want %+v", in.Rotation, want)
			}
			if !reflect.DeepEqual(in.InstanceIDs, tt.instances) {
				t.Errorf("instances = %v, want %v", in.InstanceIDs, tt.instances)
			}
			if in.Region != tt.region {
				t.Errorf("region = %q, want %q", in.Region, tt.region)
			}
			if in.Policy.Name != "nightly" || in.Policy.BatchSize != 100 || in.Policy.Selector.Tags[TagPolicy] != "nightly" {
				t.Errorf("policy not decoded with defaults: %+v", in.Policy)
			}
		})
	}
}

func TestParseInput_Rejects(t *testing.T) {
	tests := []struct {
		file   string
		field  string
		advice string
	}{
		{"bad-input-no-trigger.json", "trigger", "is missing"},
		{"bad-input-unknown-field.json", "instanceId", `did you mean "instanceIds"`},
		{"bad-input-schedule-no-time.json", "scheduledTime", "<aws.scheduler.scheduled-time>"},
		{"bad-input-schedule-bad-time.json", "scheduledTime", "RFC 3339"},
		{"bad-input-no-policy.json", "policy", "is missing"},
		{"bad-input-bad-policy.json", "policy.name", "lowercase"},
		{"bad-input-bad-policy.json", "policy.retention", "both 0"},
		{"bad-input-manual-bad-id.json", "instanceIds[1]", "not an instance id"},
		{"bad-input-manual-empty-ids.json", "instanceIds", "leave the field out"},
		{"bad-input-manual-future.json", "rotationTime", "may not lie in the future"},
		{"bad-input-tag-change-other-key.json", "event.detail.changed-tag-keys", "amirotate:rebuild"},
		{"bad-input-tag-change-image.json", "event.detail", "only EC2 instances"},
		{"bad-input-tag-change-image.json", "event.resources[0]", "not an EC2 instance ARN"},
		{"bad-input-tag-change-bad-arn.json", "event.resources[0]", "not an instance id"},
		{"bad-input-tag-change-wrong-event.json", "event.detail-type", "Tag Change on Resource"},
		{"bad-input-tag-change-wrong-event.json", "event.source", "aws.tag"},
		{"bad-input-tag-change-no-resource.json", "event.resources", "is empty"},
		{"bad-input-tag-change-no-event.json", "event", "<aws.events.event>"},
		{"bad-input-mixed.json", "instanceIds", `not used by trigger "schedule"`},
		{"bad-input-trailing.json", "input", "data after"},
		{"bad-input-truncated.json", "input", "not valid JSON"},
		{"bad-input-not-object.json", "input", "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.field, func(t *testing.T) {
			_, err := ParseInput(readFixture(t, tt.file), execStart)
			var inv InvalidInputError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v (%T), want InvalidInputError", err, err)
			}
			for _, p := range inv.Problems {
				if p.Field == tt.field && strings.Contains(p.Message, tt.advice) {
					return
				}
			}
			t.Errorf("no problem at %s saying %q in:\n%s", tt.field, tt.advice, err)
		})
	}
}

func TestParseInput_WrongEventTypes(t *testing.T) {
	tests := map[string]string{
		"event not an object":  `"event": "tag change"`,
		"resources not a list": `"event": {"resources": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}`,
		"tags keys not a list": `"event": {"detail": {"changed-tag-keys": "amirotate:rebuild"}}`,
	}
	for name, ev := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseInput([]byte(`{"policy":{"name":"a","retention":{"keep":1}},"trigger":"tag-change",`+ev+`}`), execStart)
			var inv InvalidInputError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v, want InvalidInputError", err)
			}
			if !strings.HasPrefix(err.Error(), "event") {
				t.Errorf("message does not point at the event: %s", err)
			}
		})
	}
}

func TestParseInput_ManualWithoutStartTimeNeedsRotationTime(t *testing.T) {
	_, err := ParseInput(readFixture(t, "input-manual-all.json"), time.Time{})
	if err == nil || !strings.Contains(err.Error(), "rotationTime") {
		t.Errorf("err = %v, want a problem at rotationTime", err)
	}
	in, err := ParseInput(readFixture(t, "input-manual.json"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Rotation.StartedAt.Equal(in.Rotation.Time) {
		t.Errorf("without a start time, StartedAt = %v, want the rotation time %v", in.Rotation.StartedAt, in.Rotation.Time)
	}
}

func TestParseInput_SameEventSameRotation(t *testing.T) {
	// A redelivered event (EventBridge delivers at least once) must make the
	// same rotation, so its images adopt, not duplicate.
	raw := readFixture(t, "input-tag-change.json")
	a, err := ParseInput(raw, execStart)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseInput(raw, execStart.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if a.Rotation.ID != b.Rotation.ID {
		t.Errorf("redelivery changed the rotation: %s then %s", a.Rotation.ID, b.Rotation.ID)
	}
}

func fixtureSeeds(f *testing.F, patterns ...string) {
	for _, pattern := range patterns {
		files, err := filepath.Glob(filepath.Join("testdata", pattern))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			f.Add(readFixture(f, filepath.Base(file)))
		}
	}
}

func FuzzParseInput(f *testing.F) {
	fixtureSeeds(f, "*input*.json")
	f.Add([]byte(`{"policy":{"name":"a","retention":{"keep":1}},"trigger":"tag-change","event":{"resources":[1]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		in, err := ParseInput(raw, execStart)
		if err != nil {
			var inv InvalidInputError
			if !errors.As(err, &inv) || len(inv.Problems) == 0 {
				t.Fatalf("error %v (%T) is not an InvalidInputError with problems", err, err)
			}
			return
		}
		if in.Rotation.ID != RotationID(in.Rotation.Time) || in.Policy.Validate() != nil {
			t.Fatalf("accepted input is inconsistent: %+v", in)
		}
		for _, id := range in.InstanceIDs {
			if !ValidInstanceID(id) {
				t.Fatalf("accepted instance id %q", id)
			}
		}
	})
}

func FuzzDecodePolicy(f *testing.F) {
	fixtureSeeds(f, "*policy*.json")
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := DecodePolicy(raw)
		if err != nil {
			var inv InvalidInputError
			if !errors.As(err, &inv) || len(inv.Problems) == 0 {
				t.Fatalf("error %v (%T) is not an InvalidInputError with problems", err, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("decoded policy does not validate: %v", err)
		}
		if name := ImageName(p.Name, "i-0123456789abcdef0", "20261125T0300Z"); !ValidImageName(name) {
			t.Fatalf("valid policy makes invalid AMI name %q", name)
		}
	})
}
