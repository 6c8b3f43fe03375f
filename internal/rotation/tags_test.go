package rotation

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func testRotation() Rotation {
	return NewRotation(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC), TriggerSchedule, time.Date(2026, 11, 25, 3, 0, 4, 0, time.UTC))
}

func TestImageTags(t *testing.T) {
	p := Policy{
		Name:             "nightly",
		Tags:             map[string]string{"Environment": "prod"},
		CopyInstanceTags: []string{"Name", "Team", "Missing", "aws:cloudformation:stack-name", "amirotate:policy"},
	}
	instance := map[string]string{
		"Name": "web-1", "Team": "payments", "Other": "not copied",
		"aws:cloudformation:stack-name": "s", "amirotate:policy": "forged",
	}
	got := ImageTags(p, testRotation(), "i-0123456789abcdef0", instance)
	want := map[string]string{
		"Name": "web-1", "Team": "payments", "Environment": "prod",
		TagPolicy: "nightly", TagInstanceID: "i-0123456789abcdef0", TagRotation: "20261125T0300Z", TagCreatedBy: "amirotate",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if !Managed(got) {
		t.Error("an image's own tags do not mark it managed")
	}
	if IsCopy(got) {
		t.Error("a source image reads as a copy")
	}
	if err := CheckTags(got); err != nil {
		t.Error(err)
	}
}

func TestImageTags_AmirotateTagsWin(t *testing.T) {
	p := Policy{Name: "nightly", Tags: map[string]string{TagPolicy: "other", TagKeep: "x"}}
	got := ImageTags(p, testRotation(), "i-1", nil)
	if got[TagPolicy] != "nightly" {
		t.Errorf("policy tag = %q; amirotate's own tags must win", got[TagPolicy])
	}
	if _, ok := got[TagKeep]; ok {
		t.Error("a policy tag forged amirotate:keep")
	}
}

func TestCopyTags(t *testing.T) {
	got := CopyTags(Policy{Name: "nightly"}, testRotation(), "i-1", nil, "ami-0123456789abcdef0", "us-east-1")
	if got[TagSourceImage] != "ami-0123456789abcdef0" || got[TagSourceRegion] != "us-east-1" || !IsCopy(got) || !Managed(got) {
		t.Errorf("copy tags %v lack their source", got)
	}
}

// TestImageTags_FitEC2Limits: the most tags a valid policy can ask for,
// with the longest keys and values, still fit one image.
func TestImageTags_FitEC2Limits(t *testing.T) {
	p := Policy{Name: strings.Repeat("p", 32), Retention: Retention{Keep: 1}, Tags: map[string]string{}}
	instance := map[string]string{}
	for i := range MaxTags - ReservedTagCount {
		k := strings.Repeat("k", 120) + string(rune('A'+i))
		if i%2 == 0 {
			p.Tags[k] = strings.Repeat("v", MaxTagValueLength)
		} else {
			p.CopyInstanceTags = append(p.CopyInstanceTags, k)
			instance[k] = strings.Repeat("w", MaxTagValueLength)
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("policy invalid: %v", err)
	}
	tags := CopyTags(p, testRotation(), "i-0123456789abcdef0", instance, "ami-0123456789abcdef0", "us-east-1")
	tags[TagLatest] = LatestValue
	tags[TagKeep] = "true"
	if err := CheckTags(tags); err != nil {
		t.Errorf("tags do not fit: %v", err)
	}
}

func TestCheckTags(t *testing.T) {
	tooMany := map[string]string{}
	for i := range 51 {
		tooMany[strings.Repeat("k", i+1)] = ""
	}
	tests := map[string]map[string]string{
		"too many":   tooMany,
		"empty key":  {"": "v"},
		"long key":   {strings.Repeat("k", 129): "v"},
		"long value": {"k": strings.Repeat("v", 257)},
		"aws key":    {"aws:x": "v"},
	}
	for name, tags := range tests {
		if err := CheckTags(tags); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := CheckTags(map[string]string{strings.Repeat("日", 128): strings.Repeat("語", 256)}); err != nil {
		t.Errorf("limits count characters, not bytes: %v", err)
	}
}

func TestManaged(t *testing.T) {
	full := map[string]string{TagCreatedBy: "amirotate", TagPolicy: "p", TagInstanceID: "i-1", TagRotation: "20261125T0300Z"}
	if !Managed(full) {
		t.Error("full tag set not managed")
	}
	for _, k := range []string{TagCreatedBy, TagPolicy, TagInstanceID, TagRotation} {
		partial := map[string]string{}
		for kk, v := range full {
			if kk != k {
				partial[kk] = v
			}
		}
		if Managed(partial) {
			t.Errorf("managed without %s", k)
		}
	}
	wrong := map[string]string{TagCreatedBy: "someone-else", TagPolicy: "p", TagInstanceID: "i-1", TagRotation: "r"}
	if Managed(wrong) {
		t.Error("managed with created-by someone-else")
	}
}

func TestKeepTagged(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "": true, "yes": true, "no": true, "false": false, "FALSE": false, " false ": false} {
		if got := KeepTagged(map[string]string{TagKeep: v}); got != want {
			t.Errorf("keep=%q: got %v, want %v", v, got, want)
		}
	}
	if KeepTagged(map[string]string{}) {
		t.Error("no keep tag reads as keep")
	}
}

func TestSelector_Matches(t *testing.T) {
	s := Selector{Tags: map[string]string{"amirotate:policy": "nightly", "Team": "*"}}
	tests := []struct {
		tags map[string]string
		want bool
	}{
		{map[string]string{"amirotate:policy": "nightly", "Team": "a"}, true},
		{map[string]string{"amirotate:policy": "nightly", "Team": ""}, true},
		{map[string]string{"amirotate:policy": "nightly"}, false},
		{map[string]string{"amirotate:policy": "Nightly", "Team": "a"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := s.Matches(tt.tags); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.tags, got, tt.want)
		}
	}
	if (Selector{}).Matches(map[string]string{"a": "b"}) {
		t.Error("an empty selector matched an instance")
	}
	literal := Selector{Tags: map[string]string{"Name": "web*"}}
	if literal.Matches(map[string]string{"Name": "web-1"}) || !literal.Matches(map[string]string{"Name": "web*"}) {
		t.Error(`a value other than "*" must match literally`)
	}
}

func TestSelector_Filters(t *testing.T) {
	s := Selector{Tags: map[string]string{"amirotate:policy": "nightly", "Team": "*", "Name": `web*?\`}}
	want := []Filter{
		{Name: "tag:Name", Values: []string{`web\*\?\\`}},
		{Name: "tag:Team", Values: []string{"*"}},
		{Name: "tag:amirotate:policy", Values: []string{"nightly"}},
	}
	if got := s.Filters(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}
