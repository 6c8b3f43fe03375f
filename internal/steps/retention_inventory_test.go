package steps

import (
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/amirotate/amirotate/internal/rotation"
)

// TestInventory_FollowsAutoScalingGroupsThroughTrackedTemplates: plan names
// the groups that launch each image and through which template version, and
// knows that a group following a tracked template ($Default, $Latest) moves
// to the next image with it, while a group pinned to a version number keeps
// its image; the next rotation's publish and retention then do what plan
// said.
func TestInventory_FollowsAutoScalingGroupsThroughTrackedTemplates(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1},"publish":{"launchTemplates":true}`)
	const inst = "i-0000000a"
	pinnedImage, _ := w.mk(img{instance: inst, daysAgo: 3})
	middle, _ := w.mk(img{instance: inst, daysAgo: 2})
	current, _ := w.mk(img{instance: inst, daysAgo: 1})
	lt := w.template(rtHome, "web", []string{pinnedImage, middle, current}, 3, track(inst))
	w.group(rtHome, "web-follows", func(in *autoscaling.CreateAutoScalingGroupInput) { in.LaunchTemplate = ltSpec(lt, "$Default") })
	w.group(rtHome, "web-latest", func(in *autoscaling.CreateAutoScalingGroupInput) { in.LaunchTemplate = ltSpec(lt, "$Latest") })
	w.group(rtHome, "web-pinned", func(in *autoscaling.CreateAutoScalingGroupInput) { in.LaunchTemplate = ltSpec(lt, "1") })

	inv, err := NewInspect(w.clients, Env{Now: w.clock.Now}).Inventory(w.ctx, w.policy, w.rot.Time)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]InventoryImage{}
	for _, im := range inv.Images {
		byID[im.ImageID] = im
	}
	for _, want := range []string{
		"auto-scaling-group web-follows (launch template " + lt + " version 3 via $Default)",
		"auto-scaling-group web-latest (launch template " + lt + " version 3 via $Latest)",
	} {
		if !slices.Contains(byID[current].References, want) {
			t.Errorf("references of %s %v; want %q", current, byID[current].References, want)
		}
	}
	if want := "auto-scaling-group web-pinned (launch template " + lt + " version 1)"; !slices.Contains(byID[pinnedImage].References, want) {
		t.Errorf("references of %s %v; want %q", pinnedImage, byID[pinnedImage].References, want)
	}
	// The groups following the template move with it: today's image goes.
	if im := byID[current]; !im.Delete {
		t.Errorf("%s: %s; the groups following %s move to the next image, so it goes", current, im.Reason, lt)
	}
	if im := byID[pinnedImage]; im.Delete || !strings.HasPrefix(im.Reason, rotation.ReasonInUse+": auto-scaling-group web-pinned") {
		t.Errorf("%s: delete=%v %s; the pinned group keeps it", pinnedImage, im.Delete, im.Reason)
	}

	// The next rotation: publish moves the template, retention deletes what
	// plan said.
	b := w.runPublish(w.batchOf(w.rotated(inst)))
	b = w.runRetention(b)
	rep := scopeOf(b.Retention, inst, rtHome)
	for _, im := range inv.Images {
		if got := slices.Contains(rep.Deleted, im.ImageID); got != im.Delete {
			t.Errorf("%s: plan said delete=%v (%s), the rotation deleted=%v (kept: %s)", im.ImageID, im.Delete, im.Reason, got, rep.Kept[im.ImageID])
		}
	}
}
