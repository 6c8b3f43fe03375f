package infra

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

// TestSCP_ReservesExactlyTheTagsAmirotateWrites checks the shipped SCP:
// valid policy grammar, a Deny of tag writes that names every tag amirotate
// writes (and none of those users write: keep, track, rebuild), excepting
// exactly the roles this stack creates.
func TestSCP_ReservesExactlyTheTagsAmirotateWrites(t *testing.T) {
	raw, err := os.ReadFile("../deploy/scp-reserve-amirotate-tags.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid, Effect string
			Action      []string
			Resource    string
			Condition   map[string]map[string]json.RawMessage
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not a policy document: %v", err)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) != 1 {
		t.Fatalf("version %q, %d statements", doc.Version, len(doc.Statement))
	}
	st := doc.Statement[0]
	if st.Effect != "Deny" || st.Resource != "*" || !slices.Equal(st.Action, []string{"ec2:CreateTags", "ec2:DeleteTags"}) {
		t.Errorf("statement %+v; want Deny ec2:CreateTags and ec2:DeleteTags on *", st)
	}
	var keys []string
	if err := json.Unmarshal(st.Condition["ForAnyValue:StringEquals"]["aws:TagKeys"], &keys); err != nil {
		t.Fatalf("aws:TagKeys: %v", err)
	}
	written := []string{rotation.TagCreatedBy, rotation.TagPolicy, rotation.TagInstanceID, rotation.TagRotation,
		rotation.TagSourceImage, rotation.TagSourceRegion, rotation.TagLatest, rotation.TagTrigger, rotation.TagVerifies, rotation.TagVerification}
	if !slices.Equal(slices.Sorted(slices.Values(keys)), slices.Sorted(slices.Values(written))) {
		t.Errorf("reserved keys %v; want the tags amirotate writes %v", keys, written)
	}
	for _, user := range []string{rotation.TagKeep, rotation.TagTrack, rotation.TagRebuild} {
		if slices.Contains(keys, user) {
			t.Errorf("%s is a tag users write; the SCP must not reserve it", user)
		}
	}
	var principal string
	if err := json.Unmarshal(st.Condition["ArnNotLike"]["aws:PrincipalArn"], &principal); err != nil {
		t.Fatalf("aws:PrincipalArn: %v", err)
	}
	if want := "arn:aws:iam::*:role" + RolePath + "*"; principal != want {
		t.Errorf("exempted principals %q; want %q, the path of the stack's roles", principal, want)
	}

	// Every function's role (the ones that write tags) is under the path.
	synth(t)
	fns := 0
	for id, r := range resources(synthed.fullJSON, "AWS::IAM::Role") {
		if d, _ := props(r)["Description"].(string); !strings.HasSuffix(d, " function") {
			continue
		}
		fns++
		if p, _ := props(r)["Path"].(string); p != RolePath {
			t.Errorf("role %s has path %q; the SCP exempts only %s", id, p, RolePath)
		}
	}
	if fns != len(functionSpecs) {
		t.Errorf("%d function roles; want %d", fns, len(functionSpecs))
	}
}
