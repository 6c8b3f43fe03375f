package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

// These tests try, through `amirotate run` against the simulator, what an
// ordinary account member could do to make amirotate act on the wrong
// thing: each attack of the trust model, end to end.

// day is the rotation time n days ago at 03:00 UTC.
func day(n int) time.Time {
	return time.Now().UTC().Truncate(24*time.Hour).Add(3*time.Hour).AddDate(0, 0, -n)
}

// rotateOK runs `amirotate run` for the rotation at t and fails the test
// unless it succeeded.
func (w *runWorld) rotateOK(t time.Time, args ...string) {
	w.t.Helper()
	if out, err := w.run(append([]string{"--rotation-time", t.Format(time.RFC3339)}, args...)...); err != nil {
		w.t.Fatalf("rotation %s: %v\n%s", t.Format(time.RFC3339), err, out)
	}
}

// rotateJSON runs `amirotate run` and returns its error and --json report.
func (w *runWorld) rotateJSON(t time.Time, args ...string) (auditReport, string, error) {
	w.t.Helper()
	j := filepath.Join(w.dir, t.Format("20060102T1504")+"-"+time.Now().Format("150405.000000")+".json")
	out, err := w.run(append([]string{"--rotation-time", t.Format(time.RFC3339), "--json", j}, args...)...)
	return w.readJSON(j), out, err
}

// exists reports whether the image is still registered in region.
func (w *runWorld) exists(region, id string) bool {
	w.t.Helper()
	out, err := w.ec2[region].DescribeImages(w.ctx, &ec2.DescribeImagesInput{
		Filters: []types.Filter{{Name: aws.String("image-id"), Values: []string{id}}}, IncludeDisabled: aws.Bool(true)})
	if err != nil {
		w.t.Fatal(err)
	}
	return len(out.Images) == 1
}

// foreignImage is someone else's image in the home region (not made by
// amirotate), and its snapshots.
func (w *runWorld) foreignImage(name string) (string, []string) {
	w.t.Helper()
	home := demoRegions[0]
	host, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{"Name": "golden-builder"}})
	if err != nil {
		w.t.Fatal(err)
	}
	out, err := w.ec2[home].CreateImage(w.ctx, &ec2.CreateImageInput{InstanceId: aws.String(host), Name: aws.String(name)})
	if err != nil {
		w.t.Fatal(err)
	}
	id := aws.ToString(out.ImageId)
	waiter := ec2.NewImageAvailableWaiter(w.ec2[home], func(o *ec2.ImageAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second })
	if err := waiter.Wait(w.ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}}, time.Minute); err != nil {
		w.t.Fatal(err)
	}
	img, _ := w.ec2[home].DescribeImages(w.ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	var snaps []string
	for _, b := range img.Images[0].BlockDeviceMappings {
		if b.Ebs != nil {
			snaps = append(snaps, aws.ToString(b.Ebs.SnapshotId))
		}
	}
	return id, snaps
}

// Anyone allowed ec2:CreateTags writes amirotate's four tags onto a foreign
// image and its snapshots: the next rotations delete neither.
func TestTrust_ForgedTagsDoNotGetAForeignImageDeleted(t *testing.T) {
	w := newRunWorld(t)
	victim := w.fleet.InstanceIDs("web")[0]
	home := demoRegions[0]
	foreign, snaps := w.foreignImage("golden-base-2026")
	forged := []types.Tag{
		{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
		{Key: aws.String(rotation.TagPolicy), Value: aws.String("web")},
		{Key: aws.String(rotation.TagInstanceID), Value: aws.String(victim)},
		{Key: aws.String(rotation.TagRotation), Value: aws.String(rotation.RotationID(day(5)))},
	}
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: append([]string{foreign}, snaps...), Tags: forged}); err != nil {
		t.Fatal(err)
	}
	w.rotateOK(day(2))
	w.rotateOK(day(1))
	if !w.exists(home, foreign) {
		t.Fatalf("the foreign image %s carrying forged amirotate tags was deleted", foreign)
	}
	for _, s := range snaps {
		out, err := w.ec2[home].DescribeSnapshots(w.ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{s}})
		if err != nil || len(out.Snapshots) != 1 {
			t.Errorf("its snapshot %s is gone (%v)", s, err)
		}
	}
}

// A tag amirotate:track=<instance> on someone's production launch template
// does not make publish move it; the run reports the refusal.
func TestTrust_TrackTagDoesNotHijackALaunchTemplate(t *testing.T) {
	w := newRunWorld(t)
	victim := w.fleet.InstanceIDs("web")[1]
	home := demoRegions[0]
	prod, _ := w.foreignImage("prod-golden")
	lt, err := w.ec2[home].CreateLaunchTemplate(w.ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("production"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(prod), InstanceType: types.InstanceTypeM5Large},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate,
			Tags: []types.Tag{{Key: aws.String(rotation.TagTrack), Value: aws.String(victim)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
	rep, out, err := w.rotateJSON(day(1))
	if err == nil {
		t.Fatalf("the run succeeded although it refused to publish to %s:\n%s", id, out)
	}
	v, err2 := w.ec2[home].DescribeLaunchTemplateVersions(w.ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id), Versions: []string{"$Default"}})
	if err2 != nil || aws.ToInt64(v.LaunchTemplateVersions[0].VersionNumber) != 1 || aws.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.ImageId) != prod {
		t.Fatalf("the production template's default moved: %+v (%v)", v.LaunchTemplateVersions, err2)
	}
	found := false
	for _, row := range rep.Rows {
		found = found || (row.InstanceID == victim && strings.Contains(row.Error, id))
	}
	if !found || rep.Summary.Outcomes["error"] != 1 {
		t.Errorf("the report does not name the refused template for %s: %+v", victim, rep.Summary)
	}
}

// A rotation older than the newest images (a backdated manual run, a late
// Scheduler retry, a redrive) creates and deletes nothing, leaves latest
// where it is, and reports the instances refused.
func TestTrust_AnOlderRotationNeverUndoesANewerOne(t *testing.T) {
	w := newRunWorld(t)
	home := demoRegions[0]
	w.rotateOK(day(1))
	before := w.ownImages(home)
	rep, out, err := w.rotateJSON(day(3))
	if err == nil {
		t.Fatalf("a backdated run succeeded:\n%s", out)
	}
	if rep.Summary.ImagesCreated != 0 || rep.Summary.ImagesDeleted != 0 || rep.Summary.Outcomes["refused"] != len(w.fleet.InstanceIDs("web")) {
		t.Errorf("summary %+v; want nothing created or deleted, every instance refused", rep.Summary)
	}
	after := w.ownImages(home)
	for inst, imgs := range before {
		if len(after[inst]) != len(imgs) {
			t.Errorf("%s: %d images before, %d after", inst, len(imgs), len(after[inst]))
		}
		for _, img := range after[inst] {
			if !isLatest(img) {
				t.Errorf("%s: image %s lost amirotate:latest", inst, aws.ToString(img.ImageId))
			}
		}
	}

	// Asked for (a manual backfill), the older images are made, but latest
	// stays on the newer rotation.
	rep, out, err = w.rotateJSON(day(3), "--backfill")
	if err != nil || rep.Summary.ImagesCreated != len(before) {
		t.Fatalf("backfill made %d images (err %v); want %d\n%s", rep.Summary.ImagesCreated, err, len(before), out)
	}
	for inst, imgs := range w.ownImages(home) {
		for _, img := range imgs {
			older := strings.HasSuffix(aws.ToString(img.Name), rotation.RotationID(day(3)))
			if isLatest(img) == older {
				t.Errorf("%s: image %s (%s) latest=%v; latest stays on the newer rotation", inst, aws.ToString(img.ImageId), aws.ToString(img.Name), isLatest(img))
			}
		}
	}
}

func isLatest(img types.Image) bool {
	for _, tg := range img.Tags {
		if aws.ToString(tg.Key) == rotation.TagLatest {
			return true
		}
	}
	return false
}

// A policy of the same name whose selector matches nothing (a typo) prunes
// nothing and fails, naming the selector.
func TestTrust_ASelectorThatMatchesNothingPrunesNothing(t *testing.T) {
	w := newRunWorld(t)
	home := demoRegions[0]
	w.rotateOK(day(3))
	w.rotateOK(day(2))
	before := w.ownImages(home)
	raw, err := os.ReadFile(w.policy)
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(string(raw), `"amirotate:policy": "web"}`, `"amirotate:policy": "wbe"}`, 1)
	if err := os.WriteFile(w.policy, []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, out, err := w.rotateJSON(day(1))
	if err == nil || !strings.Contains(out, "matched no instance") {
		t.Fatalf("the run with an empty selection did not fail naming it (err %v):\n%s", err, out)
	}
	if rep.Summary.ImagesDeleted != 0 {
		t.Errorf("it deleted %d images", rep.Summary.ImagesDeleted)
	}
	after := w.ownImages(home)
	for inst, imgs := range before {
		if len(after[inst]) != len(imgs) {
			t.Errorf("%s: %d images before, %d after", inst, len(imgs), len(after[inst]))
		}
	}
}

// A rotation time years ahead would age every image past maxAgeDays: every
// step refuses it, and nothing is made or deleted.
func TestTrust_AFutureRotationTimeIsRefused(t *testing.T) {
	w := newRunWorld(t)
	home := demoRegions[0]
	w.rotateOK(day(1))
	before := w.ownImages(home)
	_, out, err := w.rotateJSON(time.Now().UTC().AddDate(3, 0, 0).Truncate(time.Hour))
	if err == nil || !strings.Contains(out, "in the future") {
		t.Fatalf("a rotation three years ahead was not refused (err %v):\n%s", err, out)
	}
	after := w.ownImages(home)
	for inst, imgs := range before {
		if len(after[inst]) != len(imgs) {
			t.Errorf("%s: %d images before, %d after", inst, len(imgs), len(after[inst]))
		}
	}
}

// Retention that cannot read one region deletes in none, and the summary
// agrees with what EC2 recorded; a share EC2 refuses makes the instance an
// error and the run fail.
func TestTrust_ReportsMatchWhatEC2Recorded(t *testing.T) {
	w := newRunWorld(t)
	w.rotateOK(day(2))
	if err := w.sim.Inject(ec2sim.Fault{Action: "DescribeImageReferences", Region: "eu-west-1", Code: "UnauthorizedOperation", Count: 1000}); err != nil {
		t.Fatal(err)
	}
	w.sim.ResetStats()
	rep, out, err := w.rotateJSON(day(1))
	if err == nil {
		t.Fatalf("the run succeeded although retention could not read eu-west-1:\n%s", out)
	}
	deregistered := 0
	for _, calls := range w.sim.Stats().Calls {
		deregistered += calls["DeregisterImage"]
	}
	if rep.Summary.ImagesDeleted != deregistered || deregistered != 0 {
		t.Errorf("summary says %d images deleted, EC2 recorded %d DeregisterImage calls; want 0 and 0", rep.Summary.ImagesDeleted, deregistered)
	}
	w.sim.ClearFaults()

	raw, _ := os.ReadFile(w.policy)
	sharing := strings.Replace(string(raw), `"retention": {"keep": 1},`, `"retention": {"keep": 1}, "shareWith": ["111122223333"],`, 1)
	if err := os.WriteFile(w.policy, []byte(sharing), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.Inject(ec2sim.Fault{Action: "ModifyImageAttribute", Code: "UnauthorizedOperation", Count: 1}); err != nil {
		t.Fatal(err)
	}
	rep, out, err = w.rotateJSON(day(1).Add(12 * time.Hour))
	if err == nil || rep.Summary.Outcomes["error"] == 0 {
		t.Fatalf("a refused share left every instance ok (err %v, outcomes %v):\n%s", err, rep.Summary.Outcomes, out)
	}
}

// The parameter a policy publishes to, written by someone else with another
// image, is not overwritten.
func TestTrust_AParameterSomeoneElseWroteIsLeftAlone(t *testing.T) {
	w := newRunWorld(t)
	victim := w.fleet.InstanceIDs("web")[2]
	home := demoRegions[0]
	prod, _ := w.foreignImage("prod-golden")
	name := "/amirotate/web/" + victim + "/latest"
	if err := w.sim.PutParameter(home, name, prod, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.rotateJSON(day(1)); err == nil {
		t.Fatal("the run succeeded although it refused to publish")
	}
	c := ssm.NewFromConfig(ec2sim.AWSConfig(os.Getenv("AWS_ENDPOINT_URL_SSM"), home))
	got, err := c.GetParameter(w.ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil || aws.ToString(got.Parameter.Value) != prod {
		t.Errorf("parameter %s = %v (%v); want %s kept", name, got, err, prod)
	}
}
