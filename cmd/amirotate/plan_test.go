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

	"github.com/amirotate/amirotate/internal/ec2limits"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// mutatingCalls counts the calls of the simulator's stats that change
// something, by region and action.
func mutatingCalls(w *runWorld) map[string]int {
	out := map[string]int{}
	for region, calls := range w.sim.Stats().Calls {
		for action, n := range calls {
			_, bare, found := strings.Cut(action, ":")
			if !found {
				bare = action
			}
			if !ec2limits.IsNonMutating(bare) {
				out[region+" "+action] += n
			}
		}
	}
	return out
}

// `amirotate plan` lists every image of the policy in both regions with the
// retention step's own decisions, what uses each image and the look-alikes
// apart; what it says the next rotation deletes is what the next rotation
// deletes; and it makes no mutating call.
func TestPlan_InventoryMatchesTheNextRotationAndWritesNothing(t *testing.T) {
	w := newRunWorld(t)
	w.rotateOK(day(3))
	w.rotateOK(day(2))
	home := demoRegions[0]
	victim := w.fleet.InstanceIDs("web")[0]
	// A look-alike: someone's image with the policy's tags under another name.
	foreign, _ := w.foreignImage("golden-base-2026")
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{foreign}, Tags: []types.Tag{
		{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
		{Key: aws.String(rotation.TagPolicy), Value: aws.String("web")},
		{Key: aws.String(rotation.TagInstanceID), Value: aws.String(victim)},
		{Key: aws.String(rotation.TagRotation), Value: aws.String(rotation.RotationID(day(9)))},
	}}); err != nil {
		t.Fatal(err)
	}

	// One image launches an instance (a reference publish does not move),
	// another is tagged amirotate:keep; the rest the next rotation deletes
	// once publish has moved the parameters and the template away.
	before := w.ownImages(home)
	instances := w.fleet.InstanceIDs("web")
	launched := aws.ToString(before[instances[0]][0].ImageId)
	kept := aws.ToString(before[instances[1]][0].ImageId)
	if _, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{ImageID: launched}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ec2[home].CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{kept},
		Tags: []types.Tag{{Key: aws.String(rotation.TagKeep), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}

	w.sim.ResetStats()
	var stdout, stderr bytes.Buffer
	j := filepath.Join(w.dir, "plan.json")
	if err := runPlan(w.ctx, []string{"--policy", w.policy, "--json", j}, &stdout, &stderr); err != nil {
		t.Fatalf("plan: %v\n%s", err, stderr.String())
	}
	t.Logf("amirotate plan:\n%s", stdout.String())
	if m := mutatingCalls(w); len(m) > 0 {
		t.Errorf("plan made mutating calls: %v", m)
	}
	raw, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	var inv steps.Inventory
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}

	// keep 1: the second rotation deleted the first's images, leaving a
	// source and a copy per instance.
	if want := 2 * len(instances); len(inv.Images) != want {
		t.Errorf("%d images listed, want %d", len(inv.Images), want)
	}
	if len(inv.LookAlikes) != 1 || inv.LookAlikes[0].ImageID != foreign || !strings.HasPrefix(inv.LookAlikes[0].Reason, rotation.ReasonNotManaged) {
		t.Errorf("look-alikes = %+v, want the foreign image %s as not-managed", inv.LookAlikes, foreign)
	}
	toDelete := map[string]bool{}
	for _, im := range inv.Images {
		if im.Delete {
			toDelete[im.ImageID] = true
		}
		if im.State != "available" || im.SizeGiB == 0 || len(im.Snapshots) == 0 || im.AgeDays < 1 || im.Rotation == "" {
			t.Errorf("incomplete row %+v", im)
		}
	}
	reasons := map[string]string{}
	for _, im := range inv.Images {
		reasons[im.ImageID] = im.Reason
	}
	if !strings.HasPrefix(reasons[launched], rotation.ReasonInUse+": instance i-") || reasons[kept] != rotation.ReasonKeepTag {
		t.Errorf("launched image %s: %q, want in-use by an instance; keep-tagged %s: %q", launched, reasons[launched], kept, reasons[kept])
	}
	if want := 2*len(instances) - 2; len(toDelete) != want {
		t.Errorf("%d images to delete, want %d (all but the launched and the keep-tagged): %v", len(toDelete), want, reasons)
	}
	if inv.Totals.ImagesDeleted != len(toDelete) || len(toDelete) == 0 {
		t.Errorf("totals %+v, %d rows to delete", inv.Totals, len(toDelete))
	}
	for _, want := range []string{"NEXT ROTATION", "DELETE: expired", "keep: in-use: instance", "keep: keep-tag", "Look-alikes: 1 images", foreign} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q", want)
		}
	}

	// The next rotation deletes exactly what plan said.
	rep, out, err := w.rotateJSON(day(1))
	if err != nil {
		t.Fatalf("next rotation: %v\n%s", err, out)
	}
	deleted := map[string]bool{}
	for _, r := range rep.Rows {
		for _, id := range r.Deleted {
			deleted[id] = true
		}
	}
	for id := range toDelete {
		if !deleted[id] {
			t.Errorf("plan said the next rotation deletes %s; it did not", id)
		}
	}
	for id := range deleted {
		if !toDelete[id] {
			t.Errorf("the next rotation deleted %s, which plan kept", id)
		}
	}
}
