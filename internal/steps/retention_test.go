package steps

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

const copyPolicyJSON = `"retention":{"keep":2},"copyTo":[{"region":"eu-west-1"}]`

func TestRetention_DeletesExpiredImagesWithTheirSnapshots(t *testing.T) {
	w := newRTWorld(t, copyPolicyJSON)
	type made struct {
		region string
		id     string
		snaps  []string
	}
	var old []made
	for _, region := range []string{rtHome, rtCopy} {
		for d := 1; d <= 4; d++ {
			id, snaps := w.mk(img{region: region, instance: "i-0000000a", daysAgo: d, copy: region != rtHome})
			old = append(old, made{region, id, snaps})
		}
	}
	b := w.runRetention(w.batchOf(w.rotated("i-0000000a")))
	if f := failures(b.Retention); len(f) > 0 {
		t.Fatalf("failures: %v", f)
	}
	for _, region := range []string{rtHome, rtCopy} {
		rep := scopeOf(b.Retention, "i-0000000a", region)
		if len(rep.Deleted) != 3 || len(rep.Kept) != 2 {
			t.Errorf("%s: deleted %v kept %v; want 3 deleted (days 2-4), 2 kept", region, rep.Deleted, rep.Kept)
		}
		if rep.SnapshotsDeleted != 6 {
			t.Errorf("%s: %d snapshots deleted; want 6 (2 per image)", region, rep.SnapshotsDeleted)
		}
	}
	for i, m := range old {
		day := i%4 + 1
		if day == 1 {
			w.requireIntact(m.region, m.id, m.snaps, "yesterday's image (within keep 2)")
		} else {
			w.requireGone(m.region, m.id, m.snaps, "expired image")
		}
	}
}

// TestRetention_KeepsEveryImageASafetyRuleProtects makes, for each rule, a
// world where an old image would be deleted but for that rule, next to an
// unprotected image of the same age that must go (proving the run did
// delete, and that the rule is what saved the first).
func TestRetention_KeepsEveryImageASafetyRuleProtects(t *testing.T) {
	base := ec2sim.BaseImageID(rtHome)
	cases := []struct {
		name   string
		victim img                             // instance and daysAgo are set by the test
		setup  func(w *rtWorld, victim string) // makes the rule hold
		reason string
		detail string // what the reason must name
	}{
		{name: "used by a running instance", setup: func(w *rtWorld, v string) { w.launch(rtHome, v, false) }, reason: rotation.ReasonInUse, detail: "instance i-"},
		{name: "used by a stopped instance", setup: func(w *rtWorld, v string) { w.launch(rtHome, v, true) }, reason: rotation.ReasonInUse, detail: "instance i-"},
		{name: "launch template default version", setup: func(w *rtWorld, v string) {
			w.template(rtHome, "lt-default", []string{v, base}, 1, nil)
		}, reason: rotation.ReasonInUse, detail: "version 1 (default)"},
		{name: "launch template default version older than the reference depth", setup: func(w *rtWorld, v string) {
			w.template(rtHome, "lt-deep", append([]string{v}, slices.Repeat([]string{base}, 14)...), 1, nil)
		}, reason: rotation.ReasonInUse, detail: "version 1 (default)"},
		{name: "launch template latest version that is not the default", setup: func(w *rtWorld, v string) {
			w.template(rtHome, "lt-latest", []string{base, v}, 1, nil)
		}, reason: rotation.ReasonInUse, detail: "version 2 (latest)"},
		{name: "SSM parameter", setup: func(w *rtWorld, v string) {
			if err := w.sim.PutParameter(rtHome, "/app/ami", v, "aws:ec2:image"); err != nil {
				t.Fatal(err)
			}
		}, reason: rotation.ReasonInUse, detail: "ssm-parameter /app/ami"},
		{name: "auto scaling group pinned to an old launch template version", setup: func(w *rtWorld, v string) {
			lt := w.template(rtHome, "lt-asg", []string{base, v, base}, 3, nil)
			w.group(rtHome, "asg-pinned", func(in *autoscaling.CreateAutoScalingGroupInput) { in.LaunchTemplate = ltSpec(lt, "2") })
		}, reason: rotation.ReasonInUse, detail: "auto-scaling-group asg-pinned"},
		{name: "auto scaling group naming its launch template", setup: func(w *rtWorld, v string) {
			w.template(rtHome, "lt-by-name", []string{base, v, base}, 3, nil)
			w.group(rtHome, "asg-by-name", func(in *autoscaling.CreateAutoScalingGroupInput) {
				in.LaunchTemplate = &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt-by-name"), Version: aws.String("2")}
			})
		}, reason: rotation.ReasonInUse, detail: "auto-scaling-group asg-by-name"},
		{name: "auto scaling group with a mixed instances policy", setup: func(w *rtWorld, v string) {
			lt := w.template(rtHome, "lt-mixed", []string{base, v, base}, 3, nil)
			w.group(rtHome, "asg-mixed", func(in *autoscaling.CreateAutoScalingGroupInput) {
				in.MixedInstancesPolicy = &asgtypes.MixedInstancesPolicy{LaunchTemplate: &asgtypes.LaunchTemplate{LaunchTemplateSpecification: ltSpec(lt, "2")}}
			})
		}, reason: rotation.ReasonInUse, detail: "auto-scaling-group asg-mixed"},
		{name: "launch configuration", setup: func(w *rtWorld, v string) { w.launchConfiguration(rtHome, "lc-old", v) }, reason: rotation.ReasonInUse, detail: "launch-configuration lc-old"},
		{name: "amirotate:keep tag", victim: img{tags: map[string]string{rotation.TagKeep: "true"}}, reason: rotation.ReasonKeepTag},
		{name: "deregistration protection", setup: func(w *rtWorld, v string) {
			if _, err := w.ec2(rtHome).EnableImageDeregistrationProtection(w.ctx, &ec2.EnableImageDeregistrationProtectionInput{ImageId: aws.String(v)}); err != nil {
				t.Fatal(err)
			}
		}, reason: rotation.ReasonProtected},
		{name: "disabled image", setup: func(w *rtWorld, v string) {
			if _, err := w.ec2(rtHome).DisableImage(w.ctx, &ec2.DisableImageInput{ImageId: aws.String(v)}); err != nil {
				t.Fatal(err)
			}
		}, reason: rotation.ReasonNotAvailable},
		{name: "failed image", victim: img{failed: true}, reason: rotation.ReasonNotAvailable},
		{name: "pending image", victim: img{pending: true}, reason: rotation.ReasonNotAvailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1}`)
			recs := w.rotated("i-0000000a")
			control, controlSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
			v := tc.victim
			v.instance, v.daysAgo = "i-0000000a", 3
			victim, victimSnaps := w.mk(v)
			if tc.setup != nil {
				tc.setup(w, victim)
			}
			b := w.runRetention(w.batchOf(recs))
			if f := failures(b.Retention); len(f) > 0 {
				t.Fatalf("failures: %v", f)
			}
			w.requireIntact(rtHome, victim, victimSnaps, tc.name)
			w.requireGone(rtHome, control, controlSnaps, "the unprotected image of the same age")
			rep := scopeOf(b.Retention, "i-0000000a", rtHome)
			if got := rotation.ReasonCode(rep.Kept[victim]); got != tc.reason || !strings.Contains(rep.Kept[victim], tc.detail) {
				t.Errorf("kept reason %q; want %s naming %q", rep.Kept[victim], tc.reason, tc.detail)
			}
			if !slices.Equal(rep.Deleted, []string{control}) {
				t.Errorf("deleted %v; want only %s", rep.Deleted, control)
			}
		})
	}
}

// TestRetention_DeletesImageOnlyInAnOldLaunchTemplateVersion: a version
// that is neither default nor latest launches nothing by itself (a group
// pinned to it is checked separately), so it does not keep its image.
func TestRetention_DeletesImageOnlyInAnOldLaunchTemplateVersion(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	recs := w.rotated("i-0000000a")
	old, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
	base := ec2sim.BaseImageID(rtHome)
	w.template(rtHome, "lt-history", []string{old, base, base}, 3, nil)
	b := w.runRetention(w.batchOf(recs))
	w.requireGone(rtHome, old, snaps, "image only in launch template version 1 of 3")
	if got := deletedIDs(b.Retention); !slices.Equal(got, []string{old}) {
		t.Errorf("deleted %v; want [%s]", got, old)
	}
}

// TestRetention_NeverTouchesImagesThatAreNotItsOwn: images that look like
// amirotate's but lack its tags, carry another policy, or belong to an
// instance outside the batch.
func TestRetention_NeverTouchesImagesThatAreNotItsOwn(t *testing.T) {
	cases := []struct {
		name  string
		image img
	}{
		{"unmanaged image with an amirotate name", img{noTags: []string{rotation.TagPolicy, rotation.TagInstanceID, rotation.TagRotation, rotation.TagCreatedBy},
			name: "amirotate-nightly-i-0000000a-20261120T0300Z"}},
		{"no created-by tag", img{noTags: []string{rotation.TagCreatedBy}}},
		{"created by someone else", img{tags: map[string]string{rotation.TagCreatedBy: "packer"}}},
		{"no rotation tag", img{noTags: []string{rotation.TagRotation}}},
		{"no instance tag", img{noTags: []string{rotation.TagInstanceID}}},
		{"another policy", img{policy: "weekly"}},
		{"policy tag differs in case", img{policy: "Nightly"}},
		{"an instance outside the batch", img{instance: "i-00000e0e"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1}`)
			recs := w.rotated("i-0000000a")
			control, controlSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
			v := tc.image
			if v.instance == "" {
				v.instance = "i-0000000a"
			}
			v.daysAgo = 30
			foreign, foreignSnaps := w.mk(v)
			b := w.runRetention(w.batchOf(recs))
			w.requireIntact(rtHome, foreign, foreignSnaps, tc.name)
			w.requireGone(rtHome, control, controlSnaps, "the batch's expired image")
			// Filtered out by the listing, or listed and kept as not ours.
			for _, rep := range b.Retention {
				if why, ok := rep.Kept[foreign]; ok && rotation.ReasonCode(why) != rotation.ReasonNotManaged {
					t.Errorf("%s kept as %q; want %s", foreign, why, rotation.ReasonNotManaged)
				}
			}
		})
	}
}

// TestRetention_HoldsInstancesWhoseNewImageIsMissing: when this
// rotation's image (source or any copy) failed, timed out, errored or is
// not there yet, none of the instance's old images go; the other instances
// of the batch are pruned as usual.
func TestRetention_HoldsInstancesWhoseNewImageIsMissing(t *testing.T) {
	cases := []struct {
		name  string
		home  string
		copy  string
		held  bool   // reported as held (else simply out of scope)
		cause string // expected in the hold reason
	}{
		{"source failed", rotation.StateFailed, "", true, "failed"},
		{"source timed out", rotation.StateTimedOut, "", true, "timed-out"},
		{"source errored", rotation.StateError, "", true, "error"},
		{"copy failed", rotation.StateAvailable, rotation.StateFailed, true, "failed"},
		{"copy timed out", rotation.StateAvailable, rotation.StateTimedOut, true, "timed-out"},
		{"copy deferred", rotation.StateAvailable, rotation.StateDeferred, false, ""},
		{"copy missing", rotation.StateAvailable, "", false, ""},
		{"instance refused", rotation.StateRefused, "", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newRTWorld(t, copyPolicyJSON)
			var oldA []string
			snapsA := map[string][]string{}
			for _, region := range []string{rtHome, rtCopy} {
				for d := 1; d <= 4; d++ {
					id, snaps := w.mk(img{region: region, instance: "i-0000000a", daysAgo: d, copy: region != rtHome})
					oldA = append(oldA, region+"/"+id)
					snapsA[id] = snaps
				}
			}
			w.mk(img{instance: "i-0000000b", daysAgo: 5})
			okOld, okSnaps := w.mk(img{instance: "i-0000000b", daysAgo: 6})
			states := map[string]string{rtHome: tc.home}
			if tc.copy != "" {
				states[rtCopy] = tc.copy
			}
			b := w.batch(map[string]map[string]string{"i-0000000a": states})
			// i-b rotated fine in the same batch.
			for _, r := range w.rotated("i-0000000b") {
				b.Images = append(b.Images, r)
			}
			b.InstanceIDs = append(b.InstanceIDs, "i-0000000b")
			b = w.runRetention(b)
			for _, ri := range oldA {
				region, id, _ := strings.Cut(ri, "/")
				w.requireIntact(region, id, snapsA[id], tc.name)
			}
			w.requireGone(rtHome, okOld, okSnaps, "expired image of the instance that rotated fine")
			rep := scopeOf(b.Retention, "i-0000000a", rtHome)
			for id, why := range rep.Kept {
				code := rotation.ReasonCode(why)
				if tc.held && (code != rotation.ReasonHold || !strings.Contains(why, tc.cause)) {
					t.Errorf("kept %s: %q; want %s naming %s", id, why, rotation.ReasonHold, tc.cause)
				}
				if !tc.held && code != rotation.ReasonOutOfScope {
					t.Errorf("kept %s: %q; want %s", id, why, rotation.ReasonOutOfScope)
				}
			}
			if len(rep.Kept) != 4 {
				t.Errorf("report of i-0000000a: %+v; want its 4 home images kept", rep)
			}
		})
	}
}

// TestRetention_PaginatesImagesAndReferences lists 30 images and their
// references five per page: an image used only on a later page must still
// be kept, and every expired image on any page must go.
func TestRetention_PaginatesImagesAndReferences(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":2},"maxDeletionsPerInstance":100`)
	recs := w.rotated("i-0000000a")
	type made struct {
		id    string
		snaps []string
	}
	var old []made
	for d := 1; d <= 30; d++ {
		id, snaps := w.mk(img{instance: "i-0000000a", daysAgo: d})
		old = append(old, made{id, snaps})
	}
	// Days 7, 19 and 28 are in use; day 28's image by 12 instances, so its
	// references take three pages.
	used := map[string]bool{old[6].id: true, old[18].id: true, old[27].id: true}
	w.launch(rtHome, old[6].id, false)
	w.launch(rtHome, old[18].id, true)
	for range 12 {
		w.launch(rtHome, old[27].id, false)
	}
	r := w.retention()
	r.pageSize = 5
	w.sim.ResetStats()
	b, err := r.Handle(w.ctx, w.batchOf(recs))
	if err != nil {
		t.Fatal(err)
	}
	if f := failures(b.Retention); len(f) > 0 {
		t.Fatalf("failures: %v", f)
	}
	st := w.sim.Stats()
	for i, m := range old {
		switch {
		case used[m.id]:
			w.requireIntact(rtHome, m.id, m.snaps, "image in use")
			if !strings.Contains(scopeOf(b.Retention, "i-0000000a", rtHome).Kept[m.id], "instance i-") {
				t.Errorf("day %d: kept reason %q; want the instance named", i+1, scopeOf(b.Retention, "i-0000000a", rtHome).Kept[m.id])
			}
		case i == 0: // yesterday's: keep 2 with today's
			w.requireIntact(rtHome, m.id, m.snaps, "within keep")
		default:
			w.requireGone(rtHome, m.id, m.snaps, "expired image")
		}
	}
	if got := len(deletedIDs(b.Retention)); got != 26 {
		t.Errorf("deleted %d; want 26 (30 old - yesterday's - 3 in use)", got)
	}
	if n := st.Calls[rtHome]["DescribeImages"]; n < 7 {
		t.Errorf("%d DescribeImages calls; want ≥ 7 pages of 5 for 31 images", n)
	}
	// 29 candidates → 3 chunks of ≤ 10; day 28's chunk has ≥ 14 references.
	if n := st.Calls[rtHome]["DescribeImageReferences"]; n < 5 {
		t.Errorf("%d DescribeImageReferences calls; want several pages", n)
	}
}

// TestRetention_NeverDeletesASnapshotAnotherImageUses: an expired image
// shares its root snapshot with another image; the image goes, its own
// snapshot goes, the shared one stays as long as the other image lives.
func TestRetention_NeverDeletesASnapshotAnotherImageUses(t *testing.T) {
	cases := []struct {
		name string
		tags func(w *rtWorld) map[string]string // of the image sharing the snapshot
		// kept reports the shared snapshot as kept because EC2 refused
		// (the other image is not one retention listed).
		refused bool
	}{
		{"kept image of the same instance", func(w *rtWorld) map[string]string {
			tags := w.managedTags("i-0000000a", 9)
			tags[rotation.TagKeep] = "true"
			return tags
		}, false},
		{"a user's image outside amirotate", func(*rtWorld) map[string]string { return nil }, true},
		{"an image of another policy", func(w *rtWorld) map[string]string {
			tags := w.managedTags("i-0000000a", 9)
			tags[rotation.TagPolicy] = "weekly"
			return tags
		}, true},
		{"an image of another instance", func(w *rtWorld) map[string]string { return w.managedTags("i-00000e0e", 9) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1}`)
			recs := w.rotated("i-0000000a")
			old, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
			shared, own := snaps[0], snaps[1]
			other := w.register(rtHome, "shares-a-snapshot", []string{shared}, tc.tags(w))
			b := w.runRetention(w.batchOf(recs))
			if f := failures(b.Retention); len(f) > 0 {
				t.Fatalf("failures: %v", f)
			}
			if w.imageExists(rtHome, old) {
				t.Fatalf("expired image %s was not deleted", old)
			}
			if w.snapshotExists(rtHome, own) {
				t.Errorf("the expired image's own snapshot %s was left behind", own)
			}
			w.requireIntact(rtHome, other, []string{shared}, "image sharing the snapshot")
			rep := scopeOf(b.Retention, "i-0000000a", rtHome)
			if _, ok := rep.SnapshotsKept[shared]; ok != tc.refused {
				t.Errorf("snapshots kept %v; want %s reported: %v", rep.SnapshotsKept, shared, tc.refused)
			}
			if rep.SnapshotsDeleted != 1 {
				t.Errorf("%d snapshots deleted; want 1", rep.SnapshotsDeleted)
			}
		})
	}
}

// TestRetention_SharedSnapshotOfTwoExpiredImages: both images go; the
// snapshot they share goes only once neither exists (here: left for the
// orphan sweep, which deletes it once it is old enough).
func TestRetention_SharedSnapshotOfTwoExpiredImages(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	recs := w.rotated("i-0000000a")
	x, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
	tags := w.managedTags("i-0000000a", 4)
	y := w.register(rtHome, rotation.ImageName(w.policy.Name, "i-0000000a", tags[rotation.TagRotation]), []string{snaps[0]}, tags)
	b := w.runRetention(w.batchOf(recs))
	if f := failures(b.Retention); len(f) > 0 {
		t.Fatalf("failures: %v", f)
	}
	if got := deletedIDs(b.Retention); !slices.Equal(got, slices.Sorted(slices.Values([]string{x, y}))) {
		t.Fatalf("deleted %v; want both %s and %s", got, x, y)
	}
	w.clock.Advance(2 * time.Hour)
	out, err := w.retention().HandleOthers(w.ctx, RetentionOthersIn{Policy: w.policy, Rotation: w.rot, Exclude: []string{"i-0000000a"}})
	if err != nil {
		t.Fatal(err)
	}
	if w.snapshotExists(rtHome, snaps[0]) {
		t.Errorf("shared snapshot %s outlived both images and the orphan sweep (orphans %v)", snaps[0], out.Orphans)
	}
}

// TestRetention_DryRunReportsTheSamePlanAndChangesNothing runs a dry run
// (the new images only planned), then the real rotation on the same world:
// the dry run changed nothing and predicted exactly what the real run
// deleted.
func TestRetention_DryRunReportsTheSamePlanAndChangesNothing(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":2,"maxAgeDays":3},"copyTo":[{"region":"eu-west-1"}],"copyRetention":{"keep":1},"maxDeletionsPerInstance":10`)
	for d := 1; d <= 6; d++ {
		w.mk(img{instance: "i-0000000a", daysAgo: d})
		w.mk(img{instance: "i-0000000a", daysAgo: d, region: rtCopy, copy: true})
	}
	used, _ := w.mk(img{instance: "i-0000000a", daysAgo: 7})
	w.launch(rtHome, used, false)
	w.mk(img{instance: "i-0000000a", daysAgo: 8, tags: map[string]string{rotation.TagKeep: "yes"}})

	dry := w.policy
	dry.DryRun = true
	b := w.batch(map[string]map[string]string{"i-0000000a": {rtHome: rotation.StatePlanned, rtCopy: rotation.StatePlanned}})
	b.Policy = dry
	w.sim.ResetStats()
	before := inventoryOf(w)
	planned, err := w.retention().Handle(w.ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Fatalf("dry run made changing calls: %v", m)
	}
	if after := inventoryOf(w); after != before {
		t.Fatalf("dry run changed the inventory:\n%s\n---\n%s", before, after)
	}
	if len(deletedIDs(planned.Retention)) == 0 {
		t.Fatal("dry run planned no deletion; the test needs some")
	}
	for _, rep := range planned.Retention {
		for id := range rep.Kept {
			if strings.HasPrefix(id, plannedPrefix) {
				t.Errorf("report names the stand-in %s", id)
			}
		}
	}

	real := w.runRetention(w.batchOf(w.rotated("i-0000000a")))
	if got, want := deletedIDs(real.Retention), deletedIDs(planned.Retention); !slices.Equal(got, want) {
		t.Errorf("real run deleted %v; the dry run said %v", got, want)
	}
}

// inventoryOf renders every image and snapshot of the account.
func inventoryOf(w *rtWorld) string {
	var b strings.Builder
	for _, region := range []string{rtHome, rtCopy} {
		imgs, err := w.ec2(region).DescribeImages(w.ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, IncludeDisabled: aws.Bool(true)})
		if err != nil {
			w.t.Fatal(err)
		}
		var lines []string
		for _, im := range imgs.Images {
			lines = append(lines, region+" "+aws.ToString(im.ImageId)+" "+string(im.State))
		}
		snaps, err := w.ec2(region).DescribeSnapshots(w.ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
		if err != nil {
			w.t.Fatal(err)
		}
		for _, s := range snaps.Snapshots {
			lines = append(lines, region+" "+aws.ToString(s.SnapshotId))
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// TestRetention_SecondRunChangesNothing: retention is idempotent.
func TestRetention_SecondRunChangesNothing(t *testing.T) {
	w := newRTWorld(t, copyPolicyJSON)
	for d := 1; d <= 4; d++ {
		w.mk(img{instance: "i-0000000a", daysAgo: d})
		w.mk(img{instance: "i-0000000a", daysAgo: d, region: rtCopy, copy: true})
	}
	b := w.batchOf(w.rotated("i-0000000a"))
	first := w.runRetention(b)
	if len(deletedIDs(first.Retention)) != 6 {
		t.Fatalf("first run deleted %v; want 6", deletedIDs(first.Retention))
	}
	w.sim.ResetStats()
	second := w.runRetention(b)
	if got := deletedIDs(second.Retention); len(got) > 0 {
		t.Errorf("second run deleted %v", got)
	}
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("second run made changing calls: %v", m)
	}
}

// TestRetention_FinishesWhatAnInterruptedRunLeft: an image deregistered
// by an earlier attempt (NotFound now) still gets its snapshots deleted,
// and a snapshot already gone is not an error.
func TestRetention_FinishesWhatAnInterruptedRunLeft(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	id, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
	w.deregisterKeepingSnapshots(rtHome, id)
	if _, err := w.ec2(rtHome).DeleteSnapshot(w.ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snaps[1])}); err != nil {
		t.Fatal(err)
	}
	o := deleteImage(w.ctx, w.ec2(rtHome), rtHome, id, snaps, "test")
	if o.err != nil || len(o.failed) > 0 || len(o.inUse) > 0 {
		t.Fatalf("deletion %+v; want success", o)
	}
	if len(o.deleted) != 1 || len(o.gone) != 1 {
		t.Errorf("deleted %v, gone %v; want one of each (the other was already gone)", o.deleted, o.gone)
	}
	if w.snapshotExists(rtHome, snaps[0]) {
		t.Errorf("snapshot %s of the deregistered image is left", snaps[0])
	}
}

// TestRetention_ReportsWhatItCouldNotDelete: a refused deregistration or
// snapshot deletion is reported per image; the rest of the plan goes on.
func TestRetention_ReportsWhatItCouldNotDelete(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	recs := w.rotated("i-0000000a")
	a, _ := w.mk(img{instance: "i-0000000a", daysAgo: 2})
	bImg, bSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
	w.register(rtHome, "user-image", []string{bSnaps[0]}, nil)
	w.inject(ec2sim.Fault{Action: "DeregisterImage", Code: "UnauthorizedOperation", Count: 1})
	w.inject(ec2sim.Fault{Action: "DeleteSnapshot", Code: "UnauthorizedOperation", Count: 1})
	b := w.runRetention(w.batchOf(recs))
	rep := scopeOf(b.Retention, "i-0000000a", rtHome)
	if len(rep.Failed) != 1 || len(rep.Deleted) != 1 {
		t.Fatalf("report %+v; want one image failed and one deleted", rep)
	}
	failed := a
	if _, ok := rep.Failed[a]; !ok {
		failed = bImg
	}
	if !w.imageExists(rtHome, failed) {
		t.Errorf("image %s reported failed but is gone", failed)
	}
	if !strings.Contains(rep.Failed[failed], "UnauthorizedOperation") {
		t.Errorf("failure %q does not carry the AWS error", rep.Failed[failed])
	}
	if rep.Deleted[0] == bImg && len(rep.SnapshotsFailed)+len(rep.SnapshotsKept) == 0 {
		t.Errorf("the shared snapshot of %s was neither kept nor failed: %+v", bImg, rep)
	}
	if !w.snapshotExists(rtHome, bSnaps[0]) {
		t.Errorf("snapshot %s used by the user's image was deleted", bSnaps[0])
	}
}

// TestRetention_DeletesNothingWhenItCannotSeeEverything: if any listing
// or reference source fails, the region's plan is not carried out, and
// the error reaches the state machine with its class.
func TestRetention_DeletesNothingWhenItCannotSeeEverything(t *testing.T) {
	cases := []struct {
		action, code, errorType string
	}{
		{"DescribeImages", "UnauthorizedOperation", "FatalError"},
		{"DescribeImages", "InternalError", "RetryableError"},
		{"DescribeImageReferences", "UnauthorizedOperation", "FatalError"},
		{"DescribeImageReferences", "RequestLimitExceeded", "RetryableError"},
		{"DescribeLaunchTemplateVersions", "UnauthorizedOperation", "FatalError"},
		{"autoscaling:DescribeAutoScalingGroups", "AccessDenied", "FatalError"},
		{"autoscaling:DescribeLaunchConfigurations", "InternalFailure", "RetryableError"},
	}
	for _, tc := range cases {
		t.Run(tc.action+" "+tc.code, func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1}`)
			recs := w.rotated("i-0000000a")
			old, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
			w.inject(ec2sim.Fault{Action: tc.action, Code: tc.code})
			w.sim.ResetStats()
			typ, msg := lambdaResponseErrorType(t, w.retention().Handle, w.batchOf(recs))
			if typ != tc.errorType {
				t.Errorf("errorType %q (%s); want %s", typ, msg, tc.errorType)
			}
			if n := w.sim.Stats().Total("DeregisterImage"); n > 0 {
				t.Errorf("%d DeregisterImage calls although %s failed", n, tc.action)
			}
			w.sim.ClearFaults()
			w.requireIntact(rtHome, old, snaps, "retention that could not see everything")
		})
	}
}

func TestRetention_ErrorTypeReachesTheLambdaResponse(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	b := w.batchOf(w.rotated("i-0000000a"))
	b.Policy.Name = ""
	if typ, msg := lambdaResponseErrorType(t, w.retention().Handle, b); typ != "InvalidInputError" {
		t.Errorf("batch without a policy name: errorType %q (%s); want InvalidInputError", typ, msg)
	}
	in := RetentionOthersIn{Policy: w.policy, Rotation: w.rot}
	in.Policy.Retention = rotation.Retention{}
	if typ, msg := lambdaResponseErrorType(t, w.retention().HandleOthers, in); typ != "InvalidInputError" {
		t.Errorf("others pass without a retention rule: errorType %q (%s); want InvalidInputError", typ, msg)
	}
	w.inject(ec2sim.Fault{Action: "DescribeSnapshots", Code: "UnauthorizedOperation"})
	if typ, msg := lambdaResponseErrorType(t, w.retention().HandleOthers, RetentionOthersIn{Policy: w.policy, Rotation: w.rot}); typ != "FatalError" {
		t.Errorf("others pass, orphan listing refused: errorType %q (%s); want FatalError", typ, msg)
	}
}

// TestRetentionOthers_PrunesInstancesThatLeftTheSelector: images of an
// instance outside this rotation's targets (terminated, or no longer
// matching the selector) are governed by their tags: keep N newest, the
// newest always; the targets' images are left to their batches.
func TestRetentionOthers_PrunesInstancesThatLeftTheSelector(t *testing.T) {
	w := newRTWorld(t, copyPolicyJSON)
	type made struct {
		region, id string
		snaps      []string
		day        int
	}
	var gone, target []made
	for d := 10; d <= 14; d++ {
		id, snaps := w.mk(img{instance: "i-0dead000", daysAgo: d})
		gone = append(gone, made{rtHome, id, snaps, d})
	}
	for d := 10; d <= 12; d++ {
		id, snaps := w.mk(img{instance: "i-0dead000", daysAgo: d, region: rtCopy, copy: true})
		gone = append(gone, made{rtCopy, id, snaps, d})
	}
	lone, loneSnaps := w.mk(img{instance: "i-0000001e", daysAgo: 40})
	for d := 1; d <= 5; d++ {
		id, snaps := w.mk(img{instance: "i-0000ba7e", daysAgo: d})
		target = append(target, made{rtHome, id, snaps, d})
	}
	foreign, foreignSnaps := w.mk(img{instance: "i-0dead000", daysAgo: 30, policy: "weekly"})

	out, err := w.retention().HandleOthers(w.ctx, RetentionOthersIn{Policy: w.policy, Rotation: w.rot, Exclude: []string{"i-0000ba7e"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range gone {
		if m.day <= 11 {
			w.requireIntact(m.region, m.id, m.snaps, "one of the two newest of an instance that left")
		} else {
			w.requireGone(m.region, m.id, m.snaps, "expired image of an instance that left")
		}
	}
	w.requireIntact(rtHome, lone, loneSnaps, "the only (newest) image of an instance that left")
	for _, m := range target {
		w.requireIntact(m.region, m.id, m.snaps, "image of a target of this rotation")
	}
	w.requireIntact(rtHome, foreign, foreignSnaps, "image of another policy")
	for _, rep := range out.Retention {
		if rep.InstanceID == "i-0000ba7e" {
			t.Errorf("the others pass reported on a target: %+v", rep)
		}
	}
	if got := len(deletedIDs(out.Retention)); got != 4 {
		t.Errorf("deleted %d; want 4 (3 at home, 1 copy)", got)
	}
	if why := scopeOf(out.Retention, "i-0000001e", rtHome).Kept[lone]; rotation.ReasonCode(why) != rotation.ReasonNewest {
		t.Errorf("lone image kept as %q; want %s", why, rotation.ReasonNewest)
	}
}

// TestRetentionOthers_SweepsOrphanSnapshots: only the policy's snapshots
// that no image uses and that are older than an hour go.
func TestRetentionOthers_SweepsOrphanSnapshots(t *testing.T) {
	for _, dryRun := range []bool{false, true} {
		t.Run(map[bool]string{false: "real", true: "dry run"}[dryRun], func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1},"copyTo":[{"region":"eu-west-1"}]`)
			orphaned, orphanSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
			w.deregisterKeepingSnapshots(rtHome, orphaned)
			copyOrphan, copySnaps := w.mk(img{instance: "i-0000000a", daysAgo: 3, region: rtCopy, copy: true})
			w.deregisterKeepingSnapshots(rtCopy, copyOrphan)
			other, otherSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 3, policy: "weekly"})
			w.deregisterKeepingSnapshots(rtHome, other)
			reused, reusedSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 4})
			userImage := w.register(rtHome, "made-from-our-snapshot", reusedSnaps[:1], nil)
			w.deregisterKeepingSnapshots(rtHome, reused)
			live, liveSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 1})
			w.clock.Advance(2 * time.Hour)
			young, youngSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
			w.deregisterKeepingSnapshots(rtHome, young)

			in := RetentionOthersIn{Policy: w.policy, Rotation: w.rot, Exclude: []string{"i-0000000a"}}
			in.Policy.DryRun = dryRun
			w.sim.ResetStats()
			out, err := w.retention().HandleOthers(w.ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			wantHome := slices.Sorted(slices.Values(append(slices.Clone(orphanSnaps), reusedSnaps[1])))
			if got := out.Orphans[rtHome]; !slices.Equal(got, wantHome) {
				t.Errorf("orphans at home %v; want %v", got, wantHome)
			}
			if got := out.Orphans[rtCopy]; !slices.Equal(got, slices.Sorted(slices.Values(copySnaps))) {
				t.Errorf("orphans in %s %v; want %v", rtCopy, got, copySnaps)
			}
			for _, s := range append(append(slices.Clone(otherSnaps), youngSnaps...), reusedSnaps[0]) {
				if !w.snapshotExists(rtHome, s) {
					t.Errorf("snapshot %s deleted (another policy's, too young, or used by an image)", s)
				}
			}
			w.requireIntact(rtHome, live, liveSnaps, "live image")
			w.requireIntact(rtHome, userImage, reusedSnaps[:1], "user's image made from our snapshot")
			for _, s := range wantHome {
				if w.snapshotExists(rtHome, s) == !dryRun {
					t.Errorf("orphan %s exists=%v after a dry run=%v", s, !dryRun, dryRun)
				}
			}
			if dryRun {
				if m := mutations(w.sim.Stats()); len(m) > 0 {
					t.Errorf("dry run made changing calls: %v", m)
				}
			}
		})
	}
}

// TestRetention_ThrottlingDoesNotChangeWhatIsDeleted: with a third of all
// calls throttled (and retried by the SDK), retention deletes exactly what
// it deletes in calm weather.
func TestRetention_ThrottlingDoesNotChangeWhatIsDeleted(t *testing.T) {
	build := func() (*rtWorld, Batch, map[string]bool) {
		w := newRTWorld(t, copyPolicyJSON+`,"maxDeletionsPerInstance":10`)
		keep := map[string]bool{}
		for d := 1; d <= 8; d++ {
			id, _ := w.mk(img{instance: "i-0000000a", daysAgo: d})
			cp, _ := w.mk(img{instance: "i-0000000a", daysAgo: d, region: rtCopy, copy: true})
			if d == 1 {
				keep[id], keep[cp] = true, true
			}
			if d == 5 {
				w.launch(rtHome, id, false)
				keep[id] = true
			}
		}
		return w, w.batchOf(w.rotated("i-0000000a")), keep
	}
	w, b, keep := build()
	w.inject(ec2sim.Fault{Action: "*", Code: "RequestLimitExceeded", Probability: 0.33})
	r := w.retention()
	r.pageSize = 5
	out, err := r.Handle(w.ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if f := failures(out.Retention); len(f) > 0 {
		t.Fatalf("failures under throttling: %v", f)
	}
	if w.sim.Stats().Faulted == 0 {
		t.Fatal("no call was throttled; the test proves nothing")
	}
	deleted := deletedIDs(out.Retention)
	if len(deleted) != 13 {
		t.Errorf("deleted %d; want 13 (8+8 old, minus 2 within keep, minus 1 in use)", len(deleted))
	}
	for _, id := range deleted {
		if keep[id] {
			t.Errorf("deleted %s, which must stay", id)
		}
	}
}

// TestRetention_DefersDeletionsWhenTheInvocationIsNearlyOut: close to the
// Lambda deadline no deletion starts; the report says so and nothing is
// half done.
func TestRetention_DefersDeletionsWhenTheInvocationIsNearlyOut(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	recs := w.rotated("i-0000000a")
	old, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
	ctx, cancel := context.WithTimeout(w.ctx, deleteReserve/2)
	defer cancel()
	out, err := w.retention().Handle(ctx, w.batchOf(recs))
	if err != nil {
		t.Fatal(err)
	}
	w.requireIntact(rtHome, old, snaps, "deletion deferred to the next run")
	if why := scopeOf(out.Retention, "i-0000000a", rtHome).Kept[old]; why != reasonDeferred {
		t.Errorf("kept as %q; want %q", why, reasonDeferred)
	}
	if n := w.sim.Stats().Total("DeregisterImage"); n > 0 {
		t.Errorf("%d DeregisterImage calls", n)
	}
}

// TestRetention_ChecksReferencesInEveryRegion: a copy in use in its own
// region (an instance there, a parameter there) stays, while the same
// day's source at home, unused, goes.
func TestRetention_ChecksReferencesInEveryRegion(t *testing.T) {
	w := newRTWorld(t, copyPolicyJSON)
	recs := w.rotated("i-0000000a")
	w.mk(img{instance: "i-0000000a", daysAgo: 1})
	w.mk(img{instance: "i-0000000a", daysAgo: 1, region: rtCopy, copy: true})
	src, srcSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
	byInstance, snapsA := w.mk(img{instance: "i-0000000a", daysAgo: 2, region: rtCopy, copy: true})
	byParam, snapsB := w.mk(img{instance: "i-0000000a", daysAgo: 3, region: rtCopy, copy: true})
	w.launch(rtCopy, byInstance, false)
	if err := w.sim.PutParameter(rtCopy, "/app/ami", byParam, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	b := w.runRetention(w.batchOf(recs))
	w.requireGone(rtHome, src, srcSnaps, "unused source")
	w.requireIntact(rtCopy, byInstance, snapsA, "copy an instance in its region runs")
	w.requireIntact(rtCopy, byParam, snapsB, "copy a parameter in its region names")
	if got := scopeOf(b.Retention, "i-0000000a", rtCopy).Deleted; len(got) > 0 {
		t.Errorf("deleted copies %v", got)
	}
}

// TestRetention_AlwaysKeepsTheNewestAvailableImage: with only a maximum
// age and every image older than it, the newest available image of each
// scope stays (a pending newer one does not count, and stays too).
func TestRetention_AlwaysKeepsTheNewestAvailableImage(t *testing.T) {
	w := newRTWorld(t, `"retention":{"maxAgeDays":1}`)
	newest, newestSnaps := w.mk(img{instance: "i-0dead000", daysAgo: 10})
	older, olderSnaps := w.mk(img{instance: "i-0dead000", daysAgo: 20})
	pending, _ := w.mk(img{instance: "i-0dead000", daysAgo: 5, pending: true})
	out, err := w.retention().HandleOthers(w.ctx, RetentionOthersIn{Policy: w.policy, Rotation: w.rot, Exclude: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	w.requireIntact(rtHome, newest, newestSnaps, "newest available image")
	w.requireGone(rtHome, older, olderSnaps, "older image past max age")
	if !w.imageExists(rtHome, pending) {
		t.Errorf("pending image %s deleted", pending)
	}
	rep := scopeOf(out.Retention, "i-0dead000", rtHome)
	if rotation.ReasonCode(rep.Kept[newest]) != rotation.ReasonNewest || rotation.ReasonCode(rep.Kept[pending]) != rotation.ReasonNotAvailable {
		t.Errorf("kept %v; want %s newest and %s not available", rep.Kept, newest, pending)
	}
}

// TestRetention_RefusesAPolicyTheOtherStepsRefuse: retention checks its
// policy as every other step does. A copy region equal to the home region
// (or listed twice) would make it prune that region twice at once.
func TestRetention_RefusesAPolicyTheOtherStepsRefuse(t *testing.T) {
	cases := map[string]func(*rotation.Policy){
		"home region in copyTo":    func(p *rotation.Policy) { p.CopyTo = []rotation.CopyTarget{{Region: rtHome}} },
		"copy region listed twice": func(p *rotation.Policy) { p.CopyTo = []rotation.CopyTarget{{Region: rtCopy}, {Region: rtCopy}} },
		"malformed policy name":    func(p *rotation.Policy) { p.Name = "Nightly!" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			w := newRTWorld(t, `"retention":{"keep":1}`)
			b := w.batchOf(w.rotated("i-0000000a"))
			old, snaps := w.mk(img{instance: "i-0000000a", daysAgo: 3})
			mutate(&b.Policy)
			w.sim.ResetStats()
			if typ, msg := lambdaResponseErrorType(t, w.retention().Handle, b); typ != "InvalidInputError" {
				t.Errorf("batch: errorType %q (%s); want InvalidInputError", typ, msg)
			}
			in := RetentionOthersIn{Policy: b.Policy, Rotation: w.rot}
			if typ, msg := lambdaResponseErrorType(t, w.retention().HandleOthers, in); typ != "InvalidInputError" {
				t.Errorf("others pass: errorType %q (%s); want InvalidInputError", typ, msg)
			}
			if n := w.sim.Stats().Total("DeregisterImage"); n > 0 {
				t.Errorf("%d DeregisterImage calls with a policy the other steps refuse", n)
			}
			w.requireIntact(rtHome, old, snaps, name)
		})
	}
}

// TestRetention_CircuitBreakerStopsAPassThatWouldDeleteTooMuch: a pass that
// would delete more images of an instance in a region than
// maxDeletionsPerInstance deletes nothing at all (in any region) and fails
// with the reason; raised for one run, the same plan goes through.
func TestRetention_CircuitBreakerStopsAPassThatWouldDeleteTooMuch(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1},"maxDeletionsPerInstance":2`)
	recs := w.rotated("i-0000000a")
	for d := 1; d <= 4; d++ {
		w.mk(img{instance: "i-0000000a", daysAgo: d})
	}
	before := inventoryOf(w)
	w.sim.ResetStats()
	typ, msg := lambdaErrorType(t, w.retention().Handle, w.batchOf(recs))
	if typ != "FatalError" || !strings.Contains(msg, "circuit breaker") || !strings.Contains(msg, "maxDeletionsPerInstance") {
		t.Fatalf("errorType %q (%s); want FatalError naming the circuit breaker and the setting", typ, msg)
	}
	if m := mutations(w.sim.Stats()); len(m) > 0 || inventoryOf(w) != before {
		t.Fatalf("a stopped pass changed something: %v", m)
	}
	raised := w.batchOf(recs)
	raised.Policy.MaxDeletionsPerInstance = 4
	if got := deletedIDs(w.runRetention(raised).Retention); len(got) != 4 {
		t.Errorf("raised breaker deleted %v; want the 4 older images", got)
	}
}

// TestRetention_NeverDeletesWhatAForgedTagPointsAt: amirotate's four tags
// written onto a foreign image (anyone with ec2:CreateTags can) do not make
// it deletable, nor its snapshot an orphan.
func TestRetention_NeverDeletesWhatAForgedTagPointsAt(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1}`)
	recs := w.rotated("i-0000000a")
	old := w.managedTags("i-0000000a", 30)
	// Someone else's image of another instance, then amirotate's tags of
	// i-0000000a written onto it and its snapshots.
	foreign, snaps := w.mk(img{instance: "i-00000e0e", daysAgo: 30, name: "golden-base-2025", policy: "other"})
	if _, err := w.ec2(rtHome).CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: append([]string{foreign}, snaps...), Tags: ec2Tags(old)}); err != nil {
		t.Fatal(err)
	}
	b := w.runRetention(w.batchOf(recs))
	if got := deletedIDs(b.Retention); len(got) > 0 {
		t.Fatalf("deleted %v; the forged image must stay", got)
	}
	if why := scopeOf(b.Retention, "i-0000000a", rtHome).Kept[foreign]; rotation.ReasonCode(why) != rotation.ReasonNotManaged {
		t.Errorf("forged image kept as %q; want %s with the reason", why, rotation.ReasonNotManaged)
	}
	w.deregisterKeepingSnapshots(rtHome, foreign)
	w.clock.Advance(2 * time.Hour)
	out, err := w.retention().HandleOthers(w.ctx, RetentionOthersIn{Policy: w.policy, Rotation: w.rot, Exclude: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if !w.snapshotExists(rtHome, s) {
			t.Errorf("the orphan sweep deleted %s, whose description does not agree with its forged tags (%v)", s, out.Orphans)
		}
	}
}
