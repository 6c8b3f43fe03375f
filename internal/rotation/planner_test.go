package rotation

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var planNow = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

// image returns an available image of policy "nightly" made daysAgo days
// before planNow, with one snapshot of its own.
func image(id, region, instance string, daysAgo int, opts ...func(*Image)) Image {
	made := planNow.Add(-time.Duration(daysAgo) * 24 * time.Hour)
	img := Image{
		ID:          id,
		Region:      region,
		Name:        ImageName("nightly", instance, RotationID(made)),
		State:       StateAvailable,
		CreatedAt:   made.Add(90 * time.Second),
		Tags:        map[string]string{TagCreatedBy: CreatedBy, TagPolicy: "nightly", TagInstanceID: instance, TagRotation: RotationID(made)},
		SnapshotIDs: []string{"snap-" + strings.TrimPrefix(id, "ami-")},
		Sharing:     &Sharing{}, // read: not shared
	}
	for _, o := range opts {
		o(&img)
	}
	return img
}

func withTag(k, v string) func(*Image) { return func(i *Image) { i.Tags[k] = v } }
func withoutTag(k string) func(*Image) { return func(i *Image) { delete(i.Tags, k) } }
func withState(s string) func(*Image)  { return func(i *Image) { i.State = s } }
func protected(i *Image)               { i.DeregistrationProtected = true }
func asCopy(i *Image)                  { i.Tags[TagSourceImage] = "ami-source"; i.Tags[TagSourceRegion] = "us-east-1" }
func named(n string) func(*Image)      { return func(i *Image) { i.Name = n } }
func withSnapshots(s ...string) func(*Image) {
	return func(i *Image) { i.SnapshotIDs = s }
}

func policyKeep(keep, maxAgeDays int) Policy {
	return Policy{Name: "nightly", Retention: Retention{Keep: keep, MaxAgeDays: maxAgeDays}}
}

// plan runs the planner and returns the decisions by image id.
func plan(t *testing.T, in PlanInput) map[string]Decision {
	t.Helper()
	if in.Now.IsZero() {
		in.Now = planNow
	}
	withNoUsageReports(&in)
	ds := PlanRetention(in)
	if len(ds) != len(in.Images) {
		t.Fatalf("%d decisions for %d images", len(ds), len(in.Images))
	}
	byID := map[string]Decision{}
	for _, d := range ds {
		byID[d.ImageID] = d
	}
	return byID
}

// withNoUsageReports reads, for a test that gives none, that no image has a
// usage report (as the sharing of image() reads that none is shared).
func withNoUsageReports(in *PlanInput) {
	if in.Usage != nil {
		return
	}
	in.Usage = map[string][]UsageReport{}
	for _, img := range in.Images {
		in.Usage[img.ID] = []UsageReport{}
	}
}

// expect checks each image's fate: a reason code, and delete iff expired.
func expect(t *testing.T, got map[string]Decision, want map[string]string) {
	t.Helper()
	for id, reason := range want {
		d, ok := got[id]
		if !ok {
			t.Errorf("%s: no decision", id)
			continue
		}
		if ReasonCode(d.Reason) != reason || d.Delete != (reason == ReasonExpired) {
			t.Errorf("%s: delete=%v reason=%q, want reason %q", id, d.Delete, d.Reason, reason)
		}
	}
}

func TestPlan_DeletesExpiredBeyondKeep(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(2, 0), Images: []Image{
		image("ami-1", "us-east-1", "i-0000000a", 1),
		image("ami-2", "us-east-1", "i-0000000a", 2),
		image("ami-3", "us-east-1", "i-0000000a", 3),
		image("ami-4", "us-east-1", "i-0000000a", 4),
	}})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonWithinKeep, "ami-3": ReasonExpired, "ami-4": ReasonExpired})
	if s := got["ami-3"].SnapshotIDs; !reflect.DeepEqual(s, []string{"snap-3"}) {
		t.Errorf("snapshots of ami-3 = %v, want [snap-3]", s)
	}
	if got["ami-1"].SnapshotIDs != nil {
		t.Error("a kept image lists snapshots to delete")
	}
}

func TestPlan_NeverDeletesNewest(t *testing.T) {
	// maxAgeDays only, and every image older than it: the newest stays, or
	// the instance would have no image to launch from.
	got := plan(t, PlanInput{Policy: policyKeep(0, 7), Images: []Image{
		image("ami-1", "us-east-1", "i-0000000a", 30),
		image("ami-2", "us-east-1", "i-0000000a", 31),
	}})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonExpired})
}

func TestPlan_NeverDeletesNewestAvailableWhenNewerIsPending(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-new", "us-east-1", "i-0000000a", 0, withState(StatePending)),
		image("ami-1", "us-east-1", "i-0000000a", 1),
		image("ami-2", "us-east-1", "i-0000000a", 2),
	}})
	expect(t, got, map[string]string{"ami-new": ReasonNotAvailable, "ami-1": ReasonNewest, "ami-2": ReasonExpired})
	if r := got["ami-new"].Reason; r != "not-available: pending" {
		t.Errorf("reason %q does not say the state", r)
	}
}

// A newer image that is kept for another reason but is not available
// (protected while pending) must not take the newest slot: the newest
// usable image would then look deletable.
func TestPlan_NeverDeletesNewestAvailableWhenNewerIsProtectedButPending(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-new", "us-east-1", "i-0000000a", 0, withState(StatePending), protected),
		image("ami-kept", "us-east-1", "i-0000000a", 0, withState(StateFailed), withTag(TagKeep, "true")),
		image("ami-1", "us-east-1", "i-0000000a", 1),
		image("ami-2", "us-east-1", "i-0000000a", 2),
	}})
	expect(t, got, map[string]string{"ami-new": ReasonProtected, "ami-kept": ReasonKeepTag, "ami-1": ReasonNewest, "ami-2": ReasonExpired})
}

func TestPlan_NeverDeletesImageInUse(t *testing.T) {
	got := plan(t, PlanInput{
		Policy: policyKeep(1, 0),
		Images: []Image{
			image("ami-1", "us-east-1", "i-0000000a", 1),
			image("ami-2", "us-east-1", "i-0000000a", 2),
			image("ami-3", "us-east-1", "i-0000000a", 3),
			image("ami-4", "us-east-1", "i-0000000a", 4),
		},
		References: map[string][]string{
			"ami-2": {"launch-template lt-0abc:3"},
			"ami-3": {"ssm-parameter /amirotate/nightly/i-a/latest", "instance i-b"},
		},
	})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonInUse, "ami-3": ReasonInUse, "ami-4": ReasonExpired})
	if r := got["ami-2"].Reason; r != "in-use: launch-template lt-0abc:3" {
		t.Errorf("reason %q does not say what uses it", r)
	}
	if r := got["ami-3"].Reason; r != "in-use: instance i-b, ssm-parameter /amirotate/nightly/i-a/latest" {
		t.Errorf("reason %q: want every reference, sorted", r)
	}
}

func TestPlan_InUseReasonIsBounded(t *testing.T) {
	refs := make([]string, 1000)
	for i := range refs {
		refs[i] = fmt.Sprintf("instance i-%04d", i)
	}
	got := plan(t, PlanInput{Policy: policyKeep(1, 0),
		Images:     []Image{image("ami-1", "r", "i-0000000a", 1), image("ami-2", "r", "i-0000000a", 2)},
		References: map[string][]string{"ami-2": refs}})
	if r := got["ami-2"].Reason; !strings.HasSuffix(r, "and 997 more") || len(r) > 100 {
		t.Errorf("reason %q is not bounded", r)
	}
}

// Images another rule keeps still take their rank: keep 2 means the two
// newest, so a third, unprotected image goes even if the two newest are in use.
func TestPlan_ImagesKeptForOtherReasonsStillTakeTheirRank(t *testing.T) {
	got := plan(t, PlanInput{
		Policy: policyKeep(2, 0),
		Images: []Image{
			image("ami-1", "r", "i-0000000a", 1),
			image("ami-2", "r", "i-0000000a", 2, protected),
			image("ami-3", "r", "i-0000000a", 3),
		},
	})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonProtected, "ami-3": ReasonExpired})
}

func TestPlan_NeverDeletesKeepTagged(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-2", "r", "i-0000000a", 2, withTag(TagKeep, "true")),
		image("ami-3", "r", "i-0000000a", 3, withTag(TagKeep, "")),
		image("ami-4", "r", "i-0000000a", 4, withTag(TagKeep, "false")),
	}})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonKeepTag, "ami-3": ReasonKeepTag, "ami-4": ReasonExpired})
}

func TestPlan_NeverDeletesDeregistrationProtected(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-2", "r", "i-0000000a", 2, protected),
	}})
	expect(t, got, map[string]string{"ami-2": ReasonProtected})
}

func TestPlan_NeverDeletesImageNotAvailable(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-2", "r", "i-0000000a", 2, withState(StatePending)),
		image("ami-3", "r", "i-0000000a", 3, withState(StateFailed)),
		image("ami-4", "r", "i-0000000a", 4, withState("disabled")),
	}})
	expect(t, got, map[string]string{"ami-2": ReasonNotAvailable, "ami-3": ReasonNotAvailable, "ami-4": ReasonNotAvailable})
}

func TestPlan_NeverDeletesImageNotOurs(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-no-created-by", "r", "i-0000000a", 2, withoutTag(TagCreatedBy)),
		image("ami-other-creator", "r", "i-0000000a", 2, withTag(TagCreatedBy, "packer")),
		image("ami-no-policy", "r", "i-0000000a", 3, withoutTag(TagPolicy)),
		image("ami-other-policy", "r", "i-0000000a", 4, withTag(TagPolicy, "weekly")),
		image("ami-no-instance", "r", "i-0000000a", 5, withoutTag(TagInstanceID)),
		image("ami-no-rotation", "r", "i-0000000a", 6, withoutTag(TagRotation)),
		// An amirotate-looking name does not make an image ours.
		{ID: "ami-name-only", Region: "r", Name: "amirotate-nightly-i-a-20201125T0300Z", State: StateAvailable, CreatedAt: planNow.AddDate(-5, 0, 0)},
		// Nor do amirotate's tags: written onto a foreign image, or changed
		// on one of ours, they disagree with the name CreateImage gave.
		image("ami-forged", "r", "i-0000000a", 7, named("golden-base-2026")),
		image("ami-retagged-rotation", "r", "i-0000000a", 8, withTag(TagRotation, RotationID(planNow.AddDate(0, 0, -30)))),
		image("ami-retagged-instance", "r", "i-0000000a", 9, withTag(TagInstanceID, "i-0000000b")),
		image("ami-copy-without-region", "r", "i-0000000a", 10, asCopy, withoutTag(TagSourceRegion)),
	}})
	for id, d := range got {
		if id != "ami-1" && (d.Delete || ReasonCode(d.Reason) != ReasonNotManaged) {
			t.Errorf("%s: delete=%v reason=%q, want kept as %s", id, d.Delete, d.Reason, ReasonNotManaged)
		}
	}
}

func TestPlan_NeverDeletesImagesOfHeldInstance(t *testing.T) {
	got := plan(t, PlanInput{
		Policy: policyKeep(1, 0),
		Images: []Image{
			image("ami-a1", "r", "i-0000000a", 1), image("ami-a2", "r", "i-0000000a", 2),
			image("ami-b1", "r", "i-0000000b", 1), image("ami-b2", "r", "i-0000000b", 2),
		},
		Hold: map[string]string{"i-0000000a": "image of rotation 20261125T0300Z failed"},
	})
	expect(t, got, map[string]string{"ami-a1": ReasonHold, "ami-a2": ReasonHold, "ami-b1": ReasonNewest, "ami-b2": ReasonExpired})
	if r := got["ami-a2"].Reason; r != "new-image-missing: image of rotation 20261125T0300Z failed" {
		t.Errorf("reason %q does not say why", r)
	}
}

func TestPlan_NeverDeletesImagesOutsideScope(t *testing.T) {
	images := []Image{image("ami-a1", "r", "i-0000000a", 1), image("ami-a2", "r", "i-0000000a", 2),
		image("ami-b1", "r", "i-0000000b", 1), image("ami-b2", "r", "i-0000000b", 2)}
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: images, Scope: map[string]bool{"i-0000000b": true}})
	expect(t, got, map[string]string{"ami-a1": ReasonOutOfScope, "ami-a2": ReasonOutOfScope, "ami-b2": ReasonExpired})

	got = plan(t, PlanInput{Policy: policyKeep(1, 0), Images: images, Scope: map[string]bool{}})
	expect(t, got, map[string]string{"ami-a2": ReasonOutOfScope, "ami-b2": ReasonOutOfScope})

	// A nil scope is every instance: images of instances that left the
	// selector stay governed by their tags.
	got = plan(t, PlanInput{Policy: policyKeep(1, 0), Images: images})
	expect(t, got, map[string]string{"ami-a2": ReasonExpired, "ami-b2": ReasonExpired})
}

func TestPlan_NeverDeletesSharedSnapshot(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1, withSnapshots("snap-shared-kept")),
		image("ami-2", "r", "i-0000000a", 2, withSnapshots("snap-own-2", "snap-shared-kept", "snap-shared-deleted")),
		image("ami-3", "r", "i-0000000a", 3, withSnapshots("snap-shared-deleted", "snap-own-3", "snap-own-3")),
		// Another policy's image sharing a snapshot: not ours, still counts.
		image("ami-x", "r", "i-0000000f", 3, withTag(TagPolicy, "weekly"), withSnapshots("snap-own-3b")),
		image("ami-4", "r", "i-0000000a", 4, withSnapshots("snap-own-3b")),
	}})
	expect(t, got, map[string]string{"ami-2": ReasonExpired, "ami-3": ReasonExpired, "ami-4": ReasonExpired})
	if s := got["ami-2"].SnapshotIDs; !reflect.DeepEqual(s, []string{"snap-own-2"}) {
		t.Errorf("ami-2 snapshots = %v, want only [snap-own-2]", s)
	}
	if s := got["ami-3"].SnapshotIDs; !reflect.DeepEqual(s, []string{"snap-own-3"}) {
		t.Errorf("ami-3 snapshots = %v, want only [snap-own-3]", s)
	}
	if s := got["ami-4"].SnapshotIDs; s != nil {
		t.Errorf("ami-4 snapshots = %v, want none: another policy's image uses its snapshot", s)
	}
}

func TestPlan_KeepsWithinMaxAge(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(0, 10), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-9", "r", "i-0000000a", 9),
		image("ami-10", "r", "i-0000000a", 10), // exactly maxAgeDays old: no longer younger
		image("ami-11", "r", "i-0000000a", 11),
	}})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-9": ReasonWithinAge, "ami-10": ReasonExpired, "ami-11": ReasonExpired})
}

func TestPlan_KeepAndMaxAgeKeepTheUnion(t *testing.T) {
	images := []Image{
		image("ami-1", "r", "i-0000000a", 1), image("ami-2", "r", "i-0000000a", 2), image("ami-3", "r", "i-0000000a", 3),
		image("ami-40", "r", "i-0000000a", 40), image("ami-41", "r", "i-0000000a", 41),
	}
	// Many recent images: maxAge keeps more than keep.
	got := plan(t, PlanInput{Policy: policyKeep(2, 30), Images: images})
	expect(t, got, map[string]string{"ami-2": ReasonWithinKeep, "ami-3": ReasonWithinAge, "ami-40": ReasonExpired, "ami-41": ReasonExpired})
	// Few recent images: keep keeps more than maxAge.
	got = plan(t, PlanInput{Policy: policyKeep(4, 2), Images: images})
	expect(t, got, map[string]string{"ami-2": ReasonWithinKeep, "ami-3": ReasonWithinKeep, "ami-40": ReasonWithinKeep, "ami-41": ReasonExpired})
}

func TestPlan_CopiesUseCopyRetention(t *testing.T) {
	p := policyKeep(3, 0)
	p.CopyRetention = &Retention{Keep: 1}
	images := []Image{
		image("ami-s1", "us-east-1", "i-0000000a", 1), image("ami-s2", "us-east-1", "i-0000000a", 2), image("ami-s3", "us-east-1", "i-0000000a", 3),
		image("ami-c1", "eu-west-1", "i-0000000a", 1, asCopy), image("ami-c2", "eu-west-1", "i-0000000a", 2, asCopy), image("ami-c3", "eu-west-1", "i-0000000a", 3, asCopy),
	}
	got := plan(t, PlanInput{Policy: p, Images: images})
	expect(t, got, map[string]string{"ami-s3": ReasonWithinKeep, "ami-c1": ReasonNewest, "ami-c2": ReasonExpired, "ami-c3": ReasonExpired})

	p.CopyRetention = nil // copies follow retention
	got = plan(t, PlanInput{Policy: p, Images: images})
	expect(t, got, map[string]string{"ami-c2": ReasonWithinKeep, "ami-c3": ReasonWithinKeep})
}

func TestPlan_ScopesAreIndependent(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-a-use1", "us-east-1", "i-0000000a", 5),
		image("ami-a-euw1", "eu-west-1", "i-0000000a", 9, asCopy),
		image("ami-b-use1", "us-east-1", "i-0000000b", 1),
		image("ami-b-use1-old", "us-east-1", "i-0000000b", 2),
	}})
	expect(t, got, map[string]string{"ami-a-use1": ReasonNewest, "ami-a-euw1": ReasonNewest, "ami-b-use1": ReasonNewest, "ami-b-use1-old": ReasonExpired})
}

func TestPlan_AgeCountsFromRotationNotCopyCreation(t *testing.T) {
	// A copy made today of an image of 20 days ago is 20 days old.
	got := plan(t, PlanInput{Policy: policyKeep(0, 10), Images: []Image{
		image("ami-c1", "eu-west-1", "i-0000000a", 1, asCopy),
		image("ami-c20", "eu-west-1", "i-0000000a", 20, asCopy, func(i *Image) { i.CreatedAt = planNow }),
	}})
	expect(t, got, map[string]string{"ami-c1": ReasonNewest, "ami-c20": ReasonExpired})
}

// An image whose rotation tag does not parse has no name to be proven by:
// whatever its creation date, it is not ours.
func TestPlan_UnreadableRotationIsNotOurs(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(0, 10), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-bad-tag-old", "r", "i-0000000a", 0, withTag(TagRotation, "yesterday"), func(i *Image) { i.CreatedAt = planNow.AddDate(0, 0, -20) }),
		image("ami-bad-tag-new", "r", "i-0000000a", 0, withTag(TagRotation, "yesterday"), func(i *Image) { i.CreatedAt = planNow.AddDate(0, 0, -2) }),
		image("ami-no-time", "r", "i-0000000a", 0, withTag(TagRotation, "yesterday"), func(i *Image) { i.CreatedAt = time.Time{} }),
	}})
	expect(t, got, map[string]string{"ami-bad-tag-old": ReasonNotManaged, "ami-bad-tag-new": ReasonNotManaged, "ami-no-time": ReasonNotManaged})
}

// A listing that repeats an image (a pagination bug) must not make the
// planner contradict itself about that image.
func TestPlan_DuplicateListingKeepsTheImage(t *testing.T) {
	in := PlanInput{Policy: policyKeep(1, 0), Now: planNow, Images: []Image{
		image("ami-1", "r", "i-0000000a", 1),
		image("ami-2", "r", "i-0000000a", 2),
		image("ami-2", "r", "i-0000000a", 2),
		image("ami-3", "r", "i-0000000a", 3),
	}}
	withNoUsageReports(&in)
	got := PlanRetention(in)
	for _, d := range got {
		if d.ImageID == "ami-2" && (d.Delete || d.Reason != ReasonDuplicate) {
			t.Errorf("duplicated ami-2: %+v", d)
		}
		if d.ImageID == "ami-3" && !d.Delete {
			t.Errorf("ami-3 kept (%s), want expired", d.Reason)
		}
	}
}

func TestPlan_NoRetentionRuleKeepsEverything(t *testing.T) {
	// Validation refuses such a policy; the planner still does no harm with one.
	got := plan(t, PlanInput{Policy: policyKeep(0, 0), Images: []Image{
		image("ami-1", "r", "i-0000000a", 1), image("ami-2", "r", "i-0000000a", 200),
	}})
	expect(t, got, map[string]string{"ami-1": ReasonNewest, "ami-2": ReasonNoRule})
}

func TestPlan_OutputIsSorted(t *testing.T) {
	ds := PlanRetention(PlanInput{Policy: policyKeep(1, 0), Now: planNow, Images: []Image{
		image("ami-b2", "us-east-1", "i-0000000b", 2), image("ami-a1", "us-east-1", "i-0000000a", 1),
		image("ami-e1", "eu-west-1", "i-0000000a", 1, asCopy), image("ami-a3", "us-east-1", "i-0000000a", 3),
		image("ami-a2", "us-east-1", "i-0000000a", 2), image("ami-a2b", "us-east-1", "i-0000000a", 2),
	}})
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ImageID)
	}
	want := []string{"ami-e1", "ami-a1", "ami-a2", "ami-a2b", "ami-a3", "ami-b2"}
	if !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
}

func TestReasonCode(t *testing.T) {
	for reason, want := range map[string]string{
		"in-use: launch-template lt-1:3": ReasonInUse,
		ReasonExpired:                    ReasonExpired,
		"not-available: pending":         ReasonNotAvailable,
	} {
		if got := ReasonCode(reason); got != want {
			t.Errorf("ReasonCode(%q) = %q, want %q", reason, got, want)
		}
	}
}
