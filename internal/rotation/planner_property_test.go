package rotation

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// inventories is how many random inventories the property test checks.
const inventories = 10_000

var (
	propRegions   = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	propInstances = []string{"i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-0000000000000000d"}
)

// randomInventory makes a PlanInput with every feature the rules care about
// drawn at random: ownership, states, ages (with ties), copies, keep tags,
// protection, references, snapshots shared between images, scopes and holds.
func randomInventory(rng *rand.Rand) PlanInput {
	in := PlanInput{Now: planNow}
	keep, age := rng.IntN(5), rng.IntN(21)
	if keep == 0 && age == 0 {
		keep = 1 + rng.IntN(3)
	}
	in.Policy = Policy{Name: "nightly", Retention: Retention{Keep: keep, MaxAgeDays: age}, Rebuild: Rebuild{Keep: 1 + rng.IntN(3)}}
	switch rng.IntN(8) {
	case 0:
		in.Policy.ShareWith = []string{"111122223333"}
	case 1:
		in.Policy.ShareWith = []string{"arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"}
		in.Policy.ShareGraceDays = 3 + rng.IntN(5)
	}
	if rng.IntN(8) == 0 {
		in.Policy.DeprecateBeforeDeleteDays = rng.IntN(10)
	}
	if rng.IntN(3) == 0 {
		ck, ca := rng.IntN(4), rng.IntN(10)
		if ck == 0 && ca == 0 {
			ck = 1
		}
		in.Policy.CopyRetention = &Retention{Keep: ck, MaxAgeDays: ca}
	}

	regions := propRegions[:1+rng.IntN(len(propRegions))]
	instances := propInstances[:1+rng.IntN(len(propInstances))]
	n := rng.IntN(46)
	snapPool := 1 + n + n/2 // small enough that images share snapshots
	for i := range n {
		// Days from a small range make equal rotation times common.
		made := planNow.Add(-time.Duration(rng.IntN(30))*24*time.Hour - time.Duration(rng.IntN(2))*time.Minute)
		instance := instances[rng.IntN(len(instances))]
		if rng.IntN(12) == 0 {
			// Out of order: an image of a rotation after this one (a
			// backdated run, a redrive).
			made = planNow.Add(time.Duration(rng.IntN(3)) * 24 * time.Hour)
		}
		img := Image{
			ID:        fmt.Sprintf("ami-%017x", rng.Uint64()>>4),
			Name:      "amirotate-nightly-" + instance + "-" + made.Format("20060102T1504Z"),
			Region:    regions[rng.IntN(len(regions))],
			State:     StateAvailable,
			CreatedAt: made.Add(time.Duration(rng.IntN(3)) * time.Minute),
			Tags: map[string]string{
				TagCreatedBy: CreatedBy, TagPolicy: "nightly", TagInstanceID: instance, TagRotation: RotationID(made),
			},
		}
		switch rng.IntN(30) {
		case 0:
			delete(img.Tags, []string{TagCreatedBy, TagPolicy, TagInstanceID, TagRotation}[rng.IntN(4)])
		case 1:
			img.Tags[TagPolicy] = "weekly"
		case 2:
			img.Tags[TagRotation] = "garbled"
		case 3:
			// amirotate's tags forged onto someone else's image.
			img.Name = []string{"golden-base", "", "amirotate-nightly-" + instance}[rng.IntN(3)]
		case 4:
			// A tag of one of ours rewritten: another rotation or instance.
			if rng.IntN(2) == 0 {
				img.Tags[TagRotation] = RotationID(made.Add(-48 * time.Hour))
			} else {
				img.Tags[TagInstanceID] = instances[rng.IntN(len(instances))]
			}
		}
		if rng.IntN(6) == 0 {
			img.Tags[TagTrigger] = "tag-change"
		}
		if rng.IntN(3) == 0 {
			img.Tags[TagSourceImage] = "ami-source"
			img.Tags[TagSourceRegion] = "us-east-1"
		}
		if rng.IntN(5) == 0 {
			img.State = []string{StatePending, StateFailed, "deregistered", "disabled"}[rng.IntN(4)]
		}
		if rng.IntN(12) == 0 {
			img.Tags[TagKeep] = []string{"true", "", "false", "no", "FALSE"}[rng.IntN(5)]
		}
		img.DeregistrationProtected = rng.IntN(12) == 0
		for range rng.IntN(4) {
			img.SnapshotIDs = append(img.SnapshotIDs, fmt.Sprintf("snap-%d", rng.IntN(snapPool)))
		}
		randomSharing(rng, &in, &img)
		if rng.IntN(10) == 0 {
			if in.References == nil {
				in.References = map[string][]string{}
			}
			in.References[img.ID] = []string{fmt.Sprintf("launch-template lt-%d:%d", i, 1+rng.IntN(3))}
		}
		in.Images = append(in.Images, img)
	}
	if rng.IntN(3) > 0 {
		in.Scope = map[string]bool{}
		for _, inst := range instances {
			if rng.IntN(4) > 0 {
				in.Scope[inst] = true
			}
		}
	}
	if rng.IntN(4) == 0 {
		in.Hold = map[string]string{instances[rng.IntN(len(instances))]: "failed"}
	}
	if rng.IntN(10) == 0 {
		in.Scope = map[string]bool{} // a selection that matched nothing
	}
	withNoUsageReports(&in)
	return in
}

// oracle is a slow, independent statement of the rules: per image, whether
// it is ours and eligible at all, and whether it should be deleted.
type oracle struct {
	in       PlanInput
	ours     []bool // ours, in scope, not held, listed once
	rankable []bool // ours and available with a known time: competes for newest/keep
	standing []bool // kept whatever its rank: keep tag, protection, state, unknown age, in use
}

func newOracle(in PlanInput) *oracle {
	o := &oracle{in: in}
	count := map[string]int{}
	for _, img := range in.Images {
		count[img.ID]++
	}
	for _, img := range in.Images {
		inst := img.Tags[TagInstanceID]
		_, held := in.Hold[inst]
		made, err := time.Parse("20060102T1504Z", img.Tags[TagRotation])
		// Provably ours: the tags, and the name they give, which no one can
		// change after CreateImage (so forged tags disagree with it).
		ours := count[img.ID] == 1 && err == nil &&
			img.Tags[TagCreatedBy] == "amirotate" && img.Tags[TagPolicy] == "nightly" && strings.HasPrefix(inst, "i-") &&
			img.Name == "amirotate-nightly-"+inst+"-"+img.Tags[TagRotation] &&
			(in.Scope == nil || in.Scope[inst]) && !held
		timeKnown := err == nil
		keepTag := false
		if v, ok := img.Tags[TagKeep]; ok && v != "false" && v != "FALSE" {
			keepTag = true
		}
		rankable := ours && img.State == StateAvailable && timeKnown
		o.ours = append(o.ours, ours)
		o.rankable = append(o.rankable, rankable)
		current := !made.Before(in.Now) // this rotation's image, or a later one's
		o.standing = append(o.standing, ours && (keepTag || img.DeregistrationProtected || !rankable || current || len(in.References[img.ID]) > 0))
	}
	return o
}

func (o *oracle) sameScope(i, j int) bool {
	a, b := o.in.Images[i], o.in.Images[j]
	return a.Region == b.Region && a.Tags[TagInstanceID] == b.Tags[TagInstanceID] &&
		(a.Tags[TagSourceImage] != "") == (b.Tags[TagSourceImage] != "") &&
		(a.Tags[TagTrigger] == "tag-change") == (b.Tags[TagTrigger] == "tag-change")
}

// rank counts the rankable images of i's scope that are newer than i.
func (o *oracle) rank(i int) int {
	ti := imageTime(&o.in.Images[i])
	r := 0
	for j := range o.in.Images {
		if j == i || !o.rankable[j] || !o.sameScope(i, j) {
			continue
		}
		tj := imageTime(&o.in.Images[j])
		a, b := o.in.Images[i], o.in.Images[j]
		if tj.After(ti) || (tj.Equal(ti) && (b.CreatedAt.After(a.CreatedAt) ||
			(b.CreatedAt.Equal(a.CreatedAt) && b.ID < a.ID))) {
			r++
		}
	}
	return r
}

func (o *oracle) shouldDelete(i int) bool {
	if !o.ours[i] || o.standing[i] {
		return false
	}
	img := o.in.Images[i]
	rule := o.in.Policy.Retention
	switch {
	case img.Tags[TagTrigger] == "tag-change":
		// Rebuilds have their own quota and never count against the
		// scheduled images' keep.
		rule = Retention{Keep: o.in.Policy.Rebuild.Keep}
	case img.Tags[TagSourceImage] != "" && o.in.Policy.CopyRetention != nil:
		rule = *o.in.Policy.CopyRetention
	}
	r := o.rank(i)
	t := imageTime(&img)
	youngEnough := rule.MaxAgeDays > 0 && o.in.Now.Sub(t) < time.Duration(rule.MaxAgeDays)*24*time.Hour
	return r > 0 && r >= rule.Keep && !youngEnough && o.retirable(i)
}

// retirable states independently when an expired image may go: its launch
// permissions were read and it is not shared; once deprecated for long
// enough; and, if the policy shares or it was shared (it has a usage
// report), a settled usage report
// of the right scope, made after the grace period and recently, shows no
// use, while no such report shows any.
func (o *oracle) retirable(i int) bool {
	img := o.in.Images[i]
	p := o.in.Policy
	if img.Sharing == nil || len(img.Sharing.Targets) > 0 {
		return false
	}
	day := 24 * time.Hour
	checked := len(p.ShareWith) > 0
	if !checked {
		// Not shared now: a usage report says it was (by hand).
		reports, read := o.in.Usage[img.ID]
		if !read {
			return false
		}
		checked = len(reports) > 0
	}
	wait := time.Duration(p.DeprecateBeforeDeleteDays) * day
	grace := time.Duration(DefaultShareGraceDays) * day
	if p.ShareGraceDays > 0 {
		grace = time.Duration(p.ShareGraceDays) * day
	}
	if checked && grace > wait {
		wait = grace
	}
	now := o.in.Now
	if wait > 0 && (img.DeprecatedAt.IsZero() || img.DeprecatedAt.After(now) || now.Sub(img.DeprecatedAt) < wait) {
		return false
	}
	if !checked {
		return true
	}
	clean := false
	for _, r := range o.in.Usage[img.ID] {
		fits := r.ImageID == img.ID && len(r.AccountIDs) == 0 && len(r.ResourceTypes) == 2 &&
			r.State == "available" && !r.Created.Before(img.DeprecatedAt.Add(grace)) &&
			now.Sub(r.Created) <= UsageReportMaxAge && now.Sub(r.Created) >= UsageReportSettle
		if !fits {
			continue
		}
		for _, e := range r.Entries {
			if e.ImageID == img.ID && e.Count > 0 {
				return false
			}
		}
		clean = true
	}
	return clean
}

// randomSharing gives an image random launch permissions, deprecation and
// usage reports: unread, shared, reports of every kind (clean, in use,
// failed, pending, stale, partial, for another image, too young, entries of
// another report).
func randomSharing(rng *rand.Rand, in *PlanInput, img *Image) {
	switch rng.IntN(16) {
	case 0: // not read
	case 1:
		img.Sharing = &Sharing{Targets: []string{"444455556666"}}
	default:
		img.Sharing = &Sharing{}
	}
	if rng.IntN(3) > 0 {
		img.DeprecatedAt = planNow.Add(-time.Duration(rng.IntN(15*24)) * time.Hour)
	}
	if rng.IntN(32) == 0 {
		return // usage not read
	}
	if in.Usage == nil {
		in.Usage = map[string][]UsageReport{}
	}
	reports := []UsageReport{}
	n := rng.IntN(3)
	if (img.Sharing == nil || len(img.Sharing.Targets) == 0) && rng.IntN(8) > 0 {
		n = 0 // most images not shared never were: no report
	}
	for j := range n {
		r := UsageReport{
			ID:            fmt.Sprintf("amiur-%d", j),
			ImageID:       img.ID,
			State:         []string{"available", "available", "pending", "error"}[rng.IntN(4)],
			Created:       planNow.Add(-time.Duration(rng.IntN(6*24*60)) * time.Minute),
			ResourceTypes: []string{UsageInstance, UsageLaunchTemplate},
		}
		switch rng.IntN(8) {
		case 0:
			r.ImageID = "ami-other"
		case 1:
			r.AccountIDs = []string{"444455556666"}
		case 2:
			r.ResourceTypes = []string{UsageInstance}
		}
		if r.State == "available" && rng.IntN(2) == 0 {
			e := UsageEntry{ReportID: r.ID, ImageID: img.ID, AccountID: "444455556666", ResourceType: UsageLaunchTemplate, Count: 1}
			switch rng.IntN(4) {
			case 0:
				e.ReportID = "amiur-elsewhere"
			case 1:
				e.ImageID = "ami-other"
			}
			r.Entries = append(r.Entries, e)
		}
		reports = append(reports, r)
	}
	in.Usage[img.ID] = reports
}

// TestPlan_Properties checks the planner's invariants over many random
// inventories. Each invariant is stated from the images' properties, not
// from the planner's reasons, so a planner that forgets a rule fails here.
func TestPlan_Properties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20261125, 3))
	deleted, kept := 0, 0
	for k := range inventories {
		in := randomInventory(rng)
		ds := PlanRetention(in)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("inventory %d: %s\npolicy %+v scope %v hold %v refs %v", k, fmt.Sprintf(format, args...),
				in.Policy.Retention, in.Scope, in.Hold, in.References)
		}

		// Every image gets exactly one decision.
		if len(ds) != len(in.Images) {
			fail("%d decisions for %d images", len(ds), len(in.Images))
		}
		byID := map[string]Decision{}
		for _, d := range ds {
			if _, dup := byID[d.ImageID]; dup {
				fail("two decisions for %s", d.ImageID)
			}
			byID[d.ImageID] = d
		}
		o := newOracle(in)
		users := map[string]map[string]bool{} // snapshot → images using it
		for _, img := range in.Images {
			for _, s := range img.SnapshotIDs {
				if users[s] == nil {
					users[s] = map[string]bool{}
				}
				users[s][img.ID] = true
			}
		}

		type scope struct {
			region, instance string
			copy, rebuild    bool
		}
		newest := map[scope]int{} // scope → index of its newest rankable image
		for i, img := range in.Images {
			if !o.rankable[i] {
				continue
			}
			sc := scope{img.Region, img.Tags[TagInstanceID], img.Tags[TagSourceImage] != "", img.Tags[TagTrigger] == "tag-change"}
			if o.rank(i) == 0 {
				newest[sc] = i
			}
		}

		for i, img := range in.Images {
			d, ok := byID[img.ID]
			if !ok {
				fail("no decision for %s", img.ID)
			}
			if d.Delete {
				deleted++
				inst := img.Tags[TagInstanceID]
				_, held := in.Hold[inst]
				switch {
				case !o.ours[i] || Unproven(img, in.Policy.Name) != "":
					fail("deleted %s, which is not provably ours: %q %v", img.ID, img.Name, img.Tags)
				case in.Scope != nil && len(in.Scope) == 0:
					fail("deleted %s although the selection matched no instance", img.ID)
				case img.Tags[TagRotation] >= RotationID(in.Now):
					fail("deleted %s of rotation %s, not older than this one", img.ID, img.Tags[TagRotation])
				case in.Scope != nil && !in.Scope[inst]:
					fail("deleted %s of %s, outside the scope", img.ID, inst)
				case held:
					fail("deleted %s of held instance %s", img.ID, inst)
				case KeepTagged(img.Tags):
					fail("deleted %s tagged keep=%q", img.ID, img.Tags[TagKeep])
				case img.DeregistrationProtected:
					fail("deleted protected %s", img.ID)
				case img.State != StateAvailable:
					fail("deleted %s in state %s", img.ID, img.State)
				case len(in.References[img.ID]) > 0:
					fail("deleted %s in use by %v", img.ID, in.References[img.ID])
				case newest[scope{img.Region, inst, IsCopy(img.Tags), IsRebuild(img.Tags)}] == i:
					fail("deleted %s, the newest available image of its scope", img.ID)
				}
				if ReasonCode(d.Reason) != ReasonExpired {
					fail("deleted %s with reason %q", img.ID, d.Reason)
				}
				// Snapshots: only its own, never one another image uses, and
				// none of its own left behind.
				var own []string
				for _, s := range img.SnapshotIDs {
					if len(users[s]) == 1 {
						own = append(own, s)
					}
				}
				slices.Sort(own)
				own = slices.Compact(own)
				if !slices.Equal(d.SnapshotIDs, own) && !(len(own) == 0 && len(d.SnapshotIDs) == 0) {
					fail("deleted %s with snapshots %v; its unshared snapshots are %v (all: %v)", img.ID, d.SnapshotIDs, own, img.SnapshotIDs)
				}
			} else {
				kept++
				if d.SnapshotIDs != nil {
					fail("kept %s but listed snapshots %v", img.ID, d.SnapshotIDs)
				}
				if ReasonCode(d.Reason) == ReasonExpired {
					fail("kept %s with reason expired", img.ID)
				}
			}
			// The planner deletes exactly what the rules allow: nothing
			// more (safety, above) and nothing less (or disks fill up).
			if want := o.shouldDelete(i); d.Delete != want {
				fail("%s: delete=%v (%s), rules say %v (rank %d, %+v)", img.ID, d.Delete, d.Reason, want, o.rank(i), img)
			}
		}

		// With keep = k and no maxAgeDays, at most max(k,1) images of a
		// scope remain besides those a standing rule keeps.
		remaining, standing := map[scope]int{}, map[scope]int{}
		for i, img := range in.Images {
			if !o.ours[i] {
				continue
			}
			sc := scope{img.Region, img.Tags[TagInstanceID], img.Tags[TagSourceImage] != "", img.Tags[TagTrigger] == "tag-change"}
			if !byID[img.ID].Delete {
				remaining[sc]++
			}
			if o.standing[i] || !o.retirable(i) {
				// Kept by a standing rule, or while it is being retired.
				standing[sc]++
			}
		}
		for sc, n := range remaining {
			rule := in.Policy.RetentionFor(sc.copy, sc.rebuild)
			if rule.MaxAgeDays == 0 && n > max(rule.Keep, 1)+standing[sc] {
				fail("scope %v keeps %d images; keep %d allows %d plus %d kept for other reasons", sc, n, rule.Keep, max(rule.Keep, 1), standing[sc])
			}
		}

		// References only turn deletions into keeps: an image in use keeps
		// its rank, so no other image becomes deletable. The retention step
		// relies on this to read references for delete candidates only.
		unreferenced := in
		unreferenced.References = nil
		candidates := map[string]bool{}
		for _, d := range PlanRetention(unreferenced) {
			if d.Delete {
				candidates[d.ImageID] = true
			}
		}
		for _, d := range ds {
			if d.Delete && !candidates[d.ImageID] {
				fail("%s is deleted only once references are known", d.ImageID)
			}
		}

		// Deterministic, and independent of the order of the inventory.
		if again := PlanRetention(in); !reflect.DeepEqual(ds, again) {
			fail("two runs differ")
		}
		shuffled := in
		shuffled.Images = slices.Clone(in.Images)
		rng.Shuffle(len(shuffled.Images), func(i, j int) { shuffled.Images[i], shuffled.Images[j] = shuffled.Images[j], shuffled.Images[i] })
		if other := PlanRetention(shuffled); !reflect.DeepEqual(ds, other) {
			fail("the plan depends on the order of the images")
		}
		if !slices.IsSortedFunc(ds, func(a, b Decision) int {
			if a.Region != b.Region {
				return compareStrings(a.Region, b.Region)
			}
			return compareStrings(a.InstanceID, b.InstanceID)
		}) {
			fail("decisions not sorted by region and instance")
		}
	}
	// The generator must exercise both outcomes, or the test proves nothing.
	if deleted < inventories || kept < inventories {
		t.Errorf("weak generator: %d deletions and %d keeps over %d inventories", deleted, kept, inventories)
	}
	t.Logf("%d inventories: %d images deleted, %d kept", inventories, deleted, kept)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
