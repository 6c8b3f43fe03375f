package rotation

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reasons of retention decisions. A reason that needs detail carries it
// after ": " (e.g. "in-use: launch-template lt-0abc:3"); ReasonCode returns
// the bare constant.
const (
	// ReasonExpired is the one reason to delete: ours, available, unused,
	// unprotected, not among the newest `keep` and not younger than maxAgeDays.
	ReasonExpired = "expired"

	ReasonNotManaged     = "not-managed"               // not provably this policy's image (see Unproven)
	ReasonOutOfScope     = "out-of-scope"              // its instance is not in this pass's scope
	ReasonHold           = "new-image-missing"         // its instance's new image failed or timed out
	ReasonNotOlder       = "not-older"                 // made by this rotation or a later one: a run never deletes what it made
	ReasonKeepTag        = "keep-tag"                  // tagged amirotate:keep
	ReasonProtected      = "deregistration-protection" // EC2 would refuse; a person chose to protect it
	ReasonNotAvailable   = "not-available"             // pending, failed, ...: not a usable image
	ReasonInUse          = "in-use"                    // an instance, launch template, SSM parameter or ASG uses it
	ReasonNewest         = "newest"                    // the newest available image of its scope
	ReasonWithinKeep     = "within-keep"               // among the newest `keep`
	ReasonWithinAge      = "within-max-age"            // younger than maxAgeDays
	ReasonDuplicate      = "duplicate-listing"         // listed more than once: the listing cannot be trusted
	ReasonNoRule         = "no-retention-rule"         // keep and maxAgeDays both 0: nothing says what may go
	ReasonRolledBack     = "rolled-back"               // marked amirotate:rolled-back: kept while the mark stands
	ReasonRollbackTarget = "rollback-target"           // the image a rollback went back to, while a mark names it
	ReasonRejected       = "verification-failed"       // failed its verification: kept for a person to look at, never counted among the newest
)

// ReasonCode returns the constant part of a reason, without its detail.
func ReasonCode(reason string) string {
	code, _, _ := strings.Cut(reason, ": ")
	return code
}

// maxReferencesShown bounds the detail of an in-use reason: reports travel
// through Step Functions (256 KiB), and an image in use by a thousand
// instances needs three named to be understood.
const maxReferencesShown = 3

// scopeKey identifies a retention scope: one instance's images in one region.
// Sources and copies are ranked apart, as they may have different rules;
// rebuilds apart from scheduled images, so rebuilds cannot evict them.
type scopeKey struct {
	region, instance string
	copy, rebuild    bool
}

// planned is an image with what the planner derived from it.
type planned struct {
	img    *Image
	when   time.Time // rotation time, else creation time
	scope  scopeKey
	reason string   // set when a rule other than rank or age keeps it
	act    Decision // what retiring it does now (Needs, Unshare, ...)
	ranked bool     // competes for the newest/keep slots of its scope
}

// PlanRetention decides, for every image in in.Images, whether retention
// deletes it, with the reason. It is pure and deterministic: the same
// inventory in any order gives the same plan, sorted by region, instance,
// time (newest first) and image id. It runs in O(n log n).
//
// An image is deleted only if all of these hold; otherwise it is kept with
// the reason of the first that fails:
//   - it is listed once (a listing that repeats an image cannot be trusted);
//   - it is provably ours: this policy's tags and the name they give (Unproven);
//   - its instance is in in.Scope (when Scope is set) and not in in.Hold;
//   - it is older than this rotation (in.Now): a run never deletes an image
//     it made, nor one of a later rotation;
//   - it is not tagged amirotate:keep and not deregistration-protected;
//   - it is not marked amirotate:rolled-back, nor the rollback target a
//     mark on a provable image of its instance in its region names;
//   - it did not fail its verification (amirotate:verification=failed):
//     such an image is kept until a person deregisters it, and takes no
//     newest/keep slot, so it never pushes a verified image out;
//   - it is available and nothing references it;
//   - it is not the newest available image of its scope (instance, region,
//     source or copy, scheduled or rebuild), nor among the newest `keep` of
//     them;
//   - it is not younger than maxAgeDays (counted from its rotation time to
//     in.Now).
//
// When a rule sets both keep and maxAgeDays, an image survives if either
// keeps it: the union is the safer reading of "keep 7 and 30 days".
// Images kept for other reasons still take their place in the ranking
// (keep 3 keeps the 3 newest, whatever else protects them), so with keep = k
// and no maxAgeDays at most k images plus those kept for other reasons remain.
//
// References never make an image deletable, they only keep images: an
// image in use keeps its rank. So a caller may plan first without
// references, read them for the delete candidates only, and plan again.
//
// A deleted image's SnapshotIDs are those of its snapshots that no other
// listed image uses, whether that image is kept or deleted too.
func PlanRetention(in PlanInput) []Decision {
	n := len(in.Images)
	seen := make(map[string]int, n)
	// owner maps a snapshot to the one image using it, or "" once a second
	// image uses it too.
	owner := make(map[string]string, n)
	for i := range in.Images {
		img := &in.Images[i]
		seen[img.ID]++
		for _, s := range img.SnapshotIDs {
			if s == "" {
				continue
			}
			if o, ok := owner[s]; !ok {
				owner[s] = img.ID
			} else if o != img.ID {
				owner[s] = ""
			}
		}
	}

	targets := rollbackTargets(in, seen)
	items := make([]planned, n)
	groups := make(map[scopeKey][]*planned)
	for i := range in.Images {
		img := &in.Images[i]
		it := &items[i]
		it.img = img
		it.scope = scopeKey{region: img.Region, instance: img.Tags[TagInstanceID], copy: IsCopy(img.Tags), rebuild: IsRebuild(img.Tags)}
		it.when = imageTime(img)
		it.reason, it.ranked = standingReason(in, img, it.when, seen[img.ID] > 1, targets)
		if it.ranked {
			groups[it.scope] = append(groups[it.scope], it)
		}
	}

	for key, group := range groups {
		slices.SortFunc(group, newerFirst)
		rule := in.Policy.RetentionFor(key.copy, key.rebuild)
		keep := max(rule.Keep, 0)
		maxAge := time.Duration(max(rule.MaxAgeDays, 0)) * 24 * time.Hour
		for rank, it := range group {
			if it.reason != "" {
				continue
			}
			switch {
			case rank == 0:
				it.reason = ReasonNewest
			case keep == 0 && maxAge == 0:
				it.reason = ReasonNoRule
			case rank < keep:
				it.reason = ReasonWithinKeep
			case maxAge > 0 && in.Now.Sub(it.when) < maxAge:
				it.reason = ReasonWithinAge
			default:
				it.reason = ReasonExpired
				if why := retire(in, it.img, &it.act); why != "" {
					it.reason = why
				}
			}
		}
	}

	order := make([]*planned, n)
	for i := range items {
		order[i] = &items[i]
	}
	slices.SortFunc(order, func(a, b *planned) int {
		return cmp.Or(
			cmp.Compare(a.img.Region, b.img.Region),
			cmp.Compare(a.scope.instance, b.scope.instance),
			newerFirst(a, b),
			cmp.Compare(a.reason, b.reason),
		)
	})
	decisions := make([]Decision, n)
	for i, it := range order {
		d := Decision{
			ImageID:    it.img.ID,
			Region:     it.img.Region,
			InstanceID: it.scope.instance,
			Reason:     it.reason,
			Delete:     it.reason == ReasonExpired,
		}
		if d.Delete {
			d.SnapshotIDs = ownSnapshots(it.img, owner)
		}
		d.Needs, d.Unshare, d.DeprecateAt, d.RequestUsageReport = it.act.Needs, it.act.Unshare, it.act.DeprecateAt, it.act.RequestUsageReport
		decisions[i] = d
	}
	return decisions
}

// standingReason is why an image is kept whatever its rank or age, or "".
// The order of the checks only decides which reason a report names.
//
// ranked says whether the image competes for the newest/keep slots of its
// scope: every available image of ours does, including one another rule
// keeps anyway.
func standingReason(in PlanInput, img *Image, made time.Time, duplicate bool, targets map[targetKey]string) (reason string, ranked bool) {
	instance := img.Tags[TagInstanceID]
	if duplicate {
		return ReasonDuplicate, false
	}
	if why := Unproven(*img, in.Policy.Name); why != "" {
		return withDetail(ReasonNotManaged, why), false
	}
	if in.Scope != nil && !in.Scope[instance] {
		return ReasonOutOfScope, false
	}
	if why, held := in.Hold[instance]; held {
		return withDetail(ReasonHold, why), false
	}
	// An image that failed its verification takes no newest/keep slot,
	// whatever else keeps it (a keep tag put on it to look into it must not
	// push the last verified image out).
	ranked = img.State == StateAvailable && !Rejected(img.Tags)
	switch {
	case KeepTagged(img.Tags):
		return ReasonKeepTag, ranked
	case img.DeregistrationProtected:
		return ReasonProtected, ranked
	case RolledBack(img.Tags):
		return ReasonRolledBack, ranked
	case targets[targetKey{img.Region, instance, img.Tags[TagRotation]}] != "":
		return withDetail(ReasonRollbackTarget, "named by the mark on "+targets[targetKey{img.Region, instance, img.Tags[TagRotation]}]), ranked
	case Rejected(img.Tags):
		// Kept, not deleted: the mark is a tag, and a forged one must only
		// ever make retention keep more.
		return ReasonRejected, false
	case img.State != StateAvailable:
		return withDetail(ReasonNotAvailable, img.State), false
	}
	if !made.Before(in.Now) {
		// A backdated run, a redrive or a Scheduler retry may rotate at a
		// time older than images already made: never prune those.
		return ReasonNotOlder, ranked
	}
	if refs := in.References[img.ID]; len(refs) > 0 {
		return withDetail(ReasonInUse, describeReferences(refs)), true
	}
	return "", true
}

// targetKey names the image of one instance and rotation in one region.
type targetKey struct{ region, instance, rotation string }

// rollbackTargets maps the rotations that rolled-back marks name to the
// marked images naming them. Only marks on provable images listed once
// count: a mark forged onto a foreign image keeps nothing, and a mark only
// ever names images of its own instance and region. Either way a mark only
// adds reasons to keep.
func rollbackTargets(in PlanInput, seen map[string]int) map[targetKey]string {
	targets := map[targetKey]string{}
	for i := range in.Images {
		img := &in.Images[i]
		rot, ok := RollbackTarget(img.Tags)
		if !ok || seen[img.ID] > 1 || Unproven(*img, in.Policy.Name) != "" {
			continue
		}
		k := targetKey{img.Region, img.Tags[TagInstanceID], rot}
		if prev := targets[k]; prev == "" || img.ID < prev {
			targets[k] = img.ID
		}
	}
	return targets
}

func withDetail(reason, detail string) string {
	if detail == "" {
		return reason
	}
	return reason + ": " + detail
}

func describeReferences(refs []string) string {
	sorted := slices.Clone(refs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if len(sorted) <= maxReferencesShown {
		return strings.Join(sorted, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(sorted[:maxReferencesShown], ", "), len(sorted)-maxReferencesShown)
}

// imageTime is when an image was made: its rotation tag, which copies share
// with their source. Every provable image has one (Unproven); the others are
// kept before their time matters.
func imageTime(img *Image) time.Time {
	t, _ := parseRotationID(img.Tags[TagRotation])
	return t
}

// newerFirst orders by time, newest first, then creation date, newest
// first, then image id, so that ties are broken the same way in any order.
func newerFirst(a, b *planned) int {
	return cmp.Or(
		b.when.Compare(a.when),
		b.img.CreatedAt.Compare(a.img.CreatedAt),
		cmp.Compare(a.img.ID, b.img.ID),
	)
}

// ownSnapshots returns img's snapshots that no other image uses, sorted.
func ownSnapshots(img *Image, owner map[string]string) []string {
	var own []string
	for _, s := range img.SnapshotIDs {
		if s != "" && owner[s] == img.ID {
			own = append(own, s)
		}
	}
	slices.Sort(own)
	return slices.Compact(own)
}
