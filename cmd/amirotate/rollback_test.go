package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// newRollbackWorld is the run world with keep 2, so that an instance has an
// earlier image to roll back to, rotated three and two days ago.
func newRollbackWorld(t *testing.T) *runWorld {
	t.Helper()
	w := newRunWorld(t)
	raw, err := os.ReadFile(w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.policy, bytes.Replace(raw, []byte(`"keep": 1`), []byte(`"keep": 2`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	w.rotateOK(day(3))
	w.rotateOK(day(2))
	return w
}

// rollback runs `amirotate rollback` with args and returns its table, its
// --json result and its error.
func (w *runWorld) rollback(args ...string) (string, steps.RollbackOut, error) {
	w.t.Helper()
	var stdout, stderr bytes.Buffer
	j := filepath.Join(w.dir, "rollback.json")
	os.Remove(j)
	err := runRollback(w.ctx, append([]string{"--policy", w.policy, "--json", j}, args...), &stdout, &stderr)
	if stderr.Len() > 0 {
		w.t.Logf("stderr: %s", stderr.String())
	}
	var out steps.RollbackOut
	if raw, rerr := os.ReadFile(j); rerr == nil {
		if err := json.Unmarshal(raw, &out); err != nil {
			w.t.Fatalf("--json: %v\n%s", err, raw)
		}
	}
	return stdout.String(), out, err
}

// imageOf returns the instance's image of the rotation at day n in region.
func (w *runWorld) imageOf(region, instance string, n int) types.Image {
	w.t.Helper()
	want := rotation.ImageName("web", instance, rotation.RotationID(day(n)))
	for _, img := range w.ownImages(region)[instance] {
		if aws.ToString(img.Name) == want {
			return img
		}
	}
	w.t.Fatalf("no image %s in %s", want, region)
	return types.Image{}
}

func (w *runWorld) parameter(region, name string) string {
	w.t.Helper()
	c := ssm.NewFromConfig(ec2sim.AWSConfig(os.Getenv("AWS_ENDPOINT_URL_SSM"), region))
	got, err := c.GetParameter(w.ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil {
		w.t.Fatalf("parameter %s in %s: %v", name, region, err)
	}
	return aws.ToString(got.Parameter.Value)
}

func (w *runWorld) templateImage(region, id string) string {
	w.t.Helper()
	v, err := w.ec2[region].DescribeLaunchTemplateVersions(w.ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: aws.String(id), Versions: []string{"$Default"}})
	if err != nil || len(v.LaunchTemplateVersions) != 1 {
		w.t.Fatalf("default version of %s: %v %v", id, v, err)
	}
	return aws.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.ImageId)
}

func tagOf(img types.Image, key string) (string, bool) {
	for _, tg := range img.Tags {
		if aws.ToString(tg.Key) == key {
			return aws.ToString(tg.Value), true
		}
	}
	return "", false
}

// `amirotate rollback` of the instance a launch template tracks, across the
// policy's two regions: the dry run changes nothing; the rollback moves the
// parameter in both regions, the template and latest back to the images of
// three days ago and marks yesterday's, with an audit line per call; a
// second run changes nothing; a rerun of the rotation rolled back from
// publishes nothing; the next rotation publishes its new image and keeps
// the rollback target and the marked image; --clear lifts the mark.
func TestRollback_TwoRegionsAndALaunchTemplateThenTheNextRotationRespectsTheMark(t *testing.T) {
	w := newRollbackWorld(t)
	home, eu := demoRegions[0], demoRegions[1]
	inst := w.fleet.TrackedInstance
	param := "/amirotate/web/" + inst + "/latest"
	lt := w.fleet.LaunchTemplateID
	good := map[string]string{home: aws.ToString(w.imageOf(home, inst, 3).ImageId), eu: aws.ToString(w.imageOf(eu, inst, 3).ImageId)}
	bad := map[string]string{home: aws.ToString(w.imageOf(home, inst, 2).ImageId), eu: aws.ToString(w.imageOf(eu, inst, 2).ImageId)}
	if got := w.templateImage(home, lt); got != bad[home] {
		t.Fatalf("before: the template launches %s, want the newest %s", got, bad[home])
	}

	w.sim.ResetStats()
	table, out, err := w.rollback("--instance", inst, "--dry-run")
	t.Logf("amirotate rollback --dry-run:\n%s", table)
	if err != nil || !out.DryRun || !out.Changed || out.ToRotation != rotation.RotationID(day(3)) || len(out.Regions) != 2 {
		t.Fatalf("dry run: %v %+v", err, out)
	}
	if m := mutatingCalls(w); len(m) > 0 {
		t.Errorf("the dry run made mutating calls: %v", m)
	}
	if !strings.Contains(table, "dry run, nothing changed") || !strings.Contains(table, "would change") {
		t.Errorf("the dry run's table does not say so:\n%s", table)
	}

	audit := filepath.Join(w.dir, "rollback-audit.jsonl")
	w.sim.ResetStats()
	table, out, err = w.rollback("--instance", inst, "--audit", audit)
	t.Logf("amirotate rollback:\n%s", table)
	if err != nil || out.DryRun || !out.Changed || out.Failed {
		t.Fatalf("rollback: %v %+v", err, out)
	}
	actions := auditMatchesCalls(t, w, audit)
	t.Logf("region and action: calls = audit lines\n%s", strings.Join(actions, "\n"))
	for _, region := range []string{home, eu} {
		var r steps.RollbackRegion
		for _, rr := range out.Regions {
			if rr.Region == region {
				r = rr
			}
		}
		if r.ImageID != good[region] || len(r.Marked) != 1 || r.Marked[0] != bad[region] || r.Published == nil || r.Published.Error != "" {
			t.Errorf("%s: %+v", region, r)
		}
		if got := w.parameter(region, param); got != good[region] {
			t.Errorf("%s: parameter %s = %s, want %s", region, param, got, good[region])
		}
		g, b := w.imageOf(region, inst, 3), w.imageOf(region, inst, 2)
		if !isLatest(g) || isLatest(b) {
			t.Errorf("%s: latest on %s %v, on %s %v; want it moved back", region, good[region], isLatest(g), bad[region], isLatest(b))
		}
		if v, ok := tagOf(b, rotation.TagRolledBack); !ok || v != rotation.RotationID(day(3)) {
			t.Errorf("%s: %s is marked %q (%v), want %s", region, bad[region], v, ok, rotation.RotationID(day(3)))
		}
	}
	if got := w.templateImage(home, lt); got != good[home] {
		t.Errorf("the template launches %s, want %s", got, good[home])
	}
	for _, want := range []string{"ROLL BACK TO", good[home], good[eu], bad[home], lt, param} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q", want)
		}
	}

	// Idempotent: nothing left to change.
	w.sim.ResetStats()
	table, out, err = w.rollback("--instance", inst)
	if err != nil || out.Changed || out.ToRotation != rotation.RotationID(day(3)) {
		t.Errorf("second rollback: %v %+v", err, out)
	}
	if m := mutatingCalls(w); len(m) > 0 || !strings.Contains(table, "already in place") {
		t.Errorf("the second rollback changed %v:\n%s", m, table)
	}

	// A rerun of the rotation rolled back from (a redrive) adopts its image
	// but neither publishes it nor marks it latest: the run fails, saying so.
	rep, runOut, err := w.rotateJSON(day(2))
	if err == nil {
		t.Errorf("the rerun of the rolled-back rotation succeeded:\n%s", runOut)
	}
	said := false
	for _, row := range rep.Rows {
		said = said || (row.InstanceID == inst && strings.Contains(row.Error, rotation.TagRolledBack))
	}
	if !said {
		t.Errorf("the rerun does not say why %s was not published: %+v", inst, rep.Rows)
	}
	if got := w.parameter(home, param); got != good[home] || w.templateImage(home, lt) != good[home] || isLatest(w.imageOf(home, inst, 2)) {
		t.Errorf("the rerun published the image rolled back from again (parameter %s)", got)
	}

	// The next rotation publishes its new image; retention (keep 2) keeps
	// the rollback target and the marked image while the mark stands.
	rep, runOut, err = w.rotateJSON(day(1))
	if err != nil {
		t.Fatalf("next rotation: %v\n%s", err, runOut)
	}
	fresh := aws.ToString(w.imageOf(home, inst, 1).ImageId)
	if got := w.parameter(home, param); got != fresh || w.templateImage(home, lt) != fresh || !isLatest(w.imageOf(home, inst, 1)) {
		t.Errorf("the next rotation did not publish its new image %s (parameter %s)", fresh, got)
	}
	for _, region := range []string{home, eu} {
		if !w.exists(region, good[region]) || !w.exists(region, bad[region]) {
			t.Errorf("%s: retention deleted the rollback target %s or the marked %s", region, good[region], bad[region])
		}
	}
	other := w.fleet.InstanceIDs("web")[0]
	if other == inst {
		other = w.fleet.InstanceIDs("web")[1]
	}
	if w.existsName(home, other, 3) {
		t.Errorf("%s's image of three days ago stayed: keep 2 should delete it (the mark is %s's only)", other, inst)
	}

	var stdout, stderr bytes.Buffer
	j := filepath.Join(w.dir, "plan.json")
	if err := runPlan(w.ctx, []string{"--policy", w.policy, "--json", j}, &stdout, &stderr); err != nil {
		t.Fatalf("plan: %v\n%s", err, stderr.String())
	}
	t.Logf("amirotate plan:\n%s", stdout.String())
	for _, want := range []string{"keep: rollback-target: named by the mark on " + bad[home], "keep: rolled-back"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("plan does not show %q", want)
		}
	}

	// --clear lifts the marks in both regions; a second --clear finds none.
	w.sim.ResetStats()
	clearAudit := filepath.Join(w.dir, "clear-audit.jsonl")
	table, out, err = w.rollback("--instance", inst, "--clear", "--audit", clearAudit)
	t.Logf("amirotate rollback --clear:\n%s", table)
	if err != nil || !out.Changed || len(out.Regions) != 2 {
		t.Fatalf("clear: %v %+v", err, out)
	}
	auditMatchesCalls(t, w, clearAudit)
	for _, region := range []string{home, eu} {
		if _, ok := tagOf(w.imageOf(region, inst, 2), rotation.TagRolledBack); ok {
			t.Errorf("%s: the mark of %s stayed", region, bad[region])
		}
	}
	if _, out, err = w.rollback("--instance", inst, "--clear"); err != nil || out.Changed {
		t.Errorf("second clear: %v %+v", err, out)
	}
}

// existsName reports whether the instance's image of day n is registered.
func (w *runWorld) existsName(region, instance string, n int) bool {
	want := rotation.ImageName("web", instance, rotation.RotationID(day(n)))
	for _, img := range w.ownImages(region)[instance] {
		if aws.ToString(img.Name) == want {
			return true
		}
	}
	return false
}

// Nothing to roll back to, or an image that is not of the instance's
// lineage: refused with the reason, and nothing changes.
func TestRollback_RefusesWithTheReasonAndChangesNothing(t *testing.T) {
	w := newRunWorld(t)
	w.rotateOK(day(1)) // one image per instance and region
	home := demoRegions[0]
	inst := w.fleet.TrackedInstance
	other := w.fleet.InstanceIDs("web")[0]
	if other == inst {
		other = w.fleet.InstanceIDs("web")[1]
	}
	foreign, _ := w.foreignImage("prod-golden")
	// A look-alike: someone's image with the instance's amirotate tags.
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{foreign}, Tags: []types.Tag{
		{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
		{Key: aws.String(rotation.TagPolicy), Value: aws.String("web")},
		{Key: aws.String(rotation.TagInstanceID), Value: aws.String(inst)},
		{Key: aws.String(rotation.TagRotation), Value: aws.String(rotation.RotationID(day(5)))},
	}}); err != nil {
		t.Fatal(err)
	}
	otherImage := aws.ToString(w.imageOf(home, other, 1).ImageId)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"only one image", []string{"--instance", inst}, "nothing to roll back to"},
		{"a look-alike", []string{"--instance", inst, "--to", foreign}, "is not one of policy web's images of " + inst},
		{"another instance's image", []string{"--instance", inst, "--to", otherImage}, "it is an image of " + other},
		{"no such image", []string{"--instance", inst, "--to", "ami-0123456789abcdef0"}, "is not an image of this account"},
		{"a region outside the policy", []string{"--instance", inst, "--region", "ap-southeast-2"}, "not one of policy web's regions"},
		{"not an instance", []string{"--instance", "web-1"}, "is not an instance id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.sim.ResetStats()
			_, _, err := w.rollback(c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to say %q", err, c.want)
			}
			if m := mutatingCalls(w); len(m) > 0 {
				t.Errorf("a refused rollback made mutating calls: %v", m)
			}
		})
	}
}

// Marks someone else writes only ever make amirotate keep more or publish
// less: a mark on a look-alike naming the instance's older rotation keeps
// nothing, and a mark on another instance's newest image keeps it and the
// image it names, while the next rotation still publishes that instance's
// new image and deletes exactly what it would without the marks.
func TestRollback_ForgedMarksNeverDeleteOrPublishMore(t *testing.T) {
	w := newRollbackWorld(t)
	home := demoRegions[0]
	ids := w.fleet.InstanceIDs("web")
	victim, marked := ids[0], ids[1]
	foreign, _ := w.foreignImage("prod-golden")
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{foreign}, Tags: []types.Tag{
		{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
		{Key: aws.String(rotation.TagPolicy), Value: aws.String("web")},
		{Key: aws.String(rotation.TagInstanceID), Value: aws.String(victim)},
		{Key: aws.String(rotation.TagRotation), Value: aws.String(rotation.RotationID(day(1)))},
		{Key: aws.String(rotation.TagRolledBack), Value: aws.String(rotation.RotationID(day(3)))},
	}}); err != nil {
		t.Fatal(err)
	}
	newest := aws.ToString(w.imageOf(home, marked, 2).ImageId)
	older := aws.ToString(w.imageOf(home, marked, 3).ImageId)
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{newest},
		Tags: []types.Tag{{Key: aws.String(rotation.TagRolledBack), Value: aws.String(rotation.RotationID(day(3)))}}}); err != nil {
		t.Fatal(err)
	}
	victimOld := aws.ToString(w.imageOf(home, victim, 3).ImageId)

	rep, out, err := w.rotateJSON(day(1))
	if err != nil {
		t.Fatalf("next rotation: %v\n%s", err, out)
	}
	if w.exists(home, victimOld) {
		t.Errorf("%s (three days old, keep 2) stayed: a mark on a look-alike kept it", victimOld)
	}
	if !w.exists(home, foreign) {
		t.Error("the look-alike was deleted")
	}
	if !w.exists(home, newest) || !w.exists(home, older) {
		t.Errorf("a mark on %s's images made one go", marked)
	}
	fresh := aws.ToString(w.imageOf(home, marked, 1).ImageId)
	if got := w.parameter(home, "/amirotate/web/"+marked+"/latest"); got != fresh {
		t.Errorf("%s's parameter = %s, want its new image %s", marked, got, fresh)
	}
	deleted := map[string]bool{}
	for _, r := range rep.Rows {
		for _, id := range r.Deleted {
			deleted[id] = true
		}
	}
	// keep 2 deletes each instance's image of three days ago, in both
	// regions, but the one the mark names.
	if want := 2*len(ids) - 1; len(deleted) != want {
		t.Errorf("%d images deleted, want %d: %v", len(deleted), want, deleted)
	}
}
