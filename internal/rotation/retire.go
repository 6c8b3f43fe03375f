package rotation

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Retiring an expired image that other accounts may use, and deprecating
// before deleting.
//
// An image a policy shares (or that has launch permissions, whoever gave
// them) may be used by other accounts, which this account's references do
// not show. EC2's image usage reports do: they list, per account, the
// instances and launch templates that reference the image. Reports are
// made asynchronously and may miss the last day of instance activity and
// the last few days of launch template activity, so retention retires such
// an image over several rotations, never waiting inside one:
//
//  1. while it is shared: a settled, recent usage report must show no
//     other account using it; then its launch permissions are removed and
//     it is deprecated now (DeprecationTime is EC2's record of when sharing
//     stopped: a tag could be written by anyone in the account);
//  2. it stays until shareGraceDays (and deprecateBeforeDeleteDays) have
//     passed since that deprecation time;
//  3. a usage report made after then, settled, must again show no use; then
//     it is deleted.
//
// An image not shared, of a policy that shares with no one, is deleted at
// once unless it has a usage report: then it was shared (by hand) and
// retention stopped sharing it, and steps 2 and 3 apply.
//
// Whatever cannot be determined keeps the image: launch permissions not
// read, no usable report, a report that failed, is pending too long, is
// stale, partial (some accounts or resource types only), for another
// image, or too young for its entries to be trusted.

// Reasons of the retirement of expired images.
const (
	ReasonSharingUnknown = "sharing-unknown"  // its launch permissions were not read
	ReasonUsageUnknown   = "usage-unknown"    // no usage report can tell whether other accounts use it
	ReasonInUseElsewhere = "in-use-elsewhere" // a usage report shows other accounts using it
	ReasonSharingStopped = "sharing-stopped"  // unused elsewhere: launch permissions removed now
	ReasonDeprecating    = "deprecating"      // deprecated now; deleted after the wait
	ReasonGracePeriod    = "grace-period"     // deprecated, or sharing stopped, too recently
)

// Timing of usage reports.
const (
	// UsageReportSettle: a report's entries are trusted only this long after
	// it was made: entries may be listed after the report says available.
	UsageReportSettle = time.Hour
	// UsageReportTimeout: a report pending longer has failed; a new one is
	// requested.
	UsageReportTimeout = 24 * time.Hour
	// UsageReportMaxAge: an older report is stale.
	UsageReportMaxAge = 3 * 24 * time.Hour
)

// Needs of the planner: what it must be given to decide an image.
const (
	NeedSharing = "sharing" // the image's launch permissions (Image.Sharing)
	NeedUsage   = "usage"   // its usage reports (PlanInput.Usage)
)

// Resource types a usage report must cover.
const (
	UsageInstance       = "ec2:Instance"
	UsageLaunchTemplate = "ec2:LaunchTemplate"
)

// Sharing is an image's launch permissions as read from EC2: account ids,
// organization and OU ARNs, and "all" for public.
type Sharing struct {
	Targets []string
}

// UsageReport is an EC2 image usage report and its entries.
type UsageReport struct {
	ID      string
	ImageID string
	State   string // pending | available | error
	Reason  string // why it is in error
	Created time.Time
	// AccountIDs the report was limited to; empty means all accounts.
	AccountIDs    []string
	ResourceTypes []string
	Entries       []UsageEntry
}

// UsageEntry is one account's use of an image by one resource type.
type UsageEntry struct {
	ReportID     string
	ImageID      string
	AccountID    string
	ResourceType string
	Count        int64
}

// retire decides an expired image: it returns "" when the image may be
// deleted, or the reason it stays, with what to do now set on d.
func retire(in PlanInput, img *Image, d *Decision) string {
	p := in.Policy
	shares := !p.Shares().Empty()
	if img.Sharing == nil {
		// Launch permissions are read for every expired image: one shared by
		// hand, or by an earlier version of the policy, is used elsewhere too.
		d.Needs = NeedSharing
		return withDetail(ReasonSharingUnknown, "its launch permissions were not read")
	}
	shared := len(img.Sharing.Targets) > 0
	checkUsage := shares || shared
	if !checkUsage {
		// Not shared now, by a policy that shares with no one: it may still
		// be an image shared by hand whose sharing retention stopped (step
		// 1), which must sit out the grace period like any other. Its usage
		// reports, made before sharing stopped, say so (EC2 keeps them 30
		// days; anyone may make one, which only keeps more). Reading them
		// is needed, and fails closed, for every such image.
		if err, failed := in.UsageErrors[img.ID]; failed {
			return withDetail(ReasonUsageUnknown, "reading its usage reports failed: "+err)
		}
		reports, read := in.Usage[img.ID]
		if !read {
			d.Needs = NeedUsage
			return withDetail(ReasonUsageUnknown, "its usage reports were not read")
		}
		checkUsage = len(reports) > 0
	}
	grace := time.Duration(p.ShareGrace()) * 24 * time.Hour
	wait := time.Duration(p.DeprecateBeforeDeleteDays) * 24 * time.Hour
	if checkUsage {
		wait = max(wait, grace)
	}

	if shared {
		// Still shared: stop only when nothing elsewhere uses it now.
		if why := usage(in, img, d, time.Time{}); why != "" {
			return why
		}
		d.Unshare = slices.Clone(img.Sharing.Targets)
		d.DeprecateAt = in.Now
		return withDetail(ReasonSharingStopped, fmt.Sprintf("no other account uses it; launch permissions (%s) removed and deprecated now; deleted after %s if a usage report then shows no use",
			describeTargets(img.Sharing.Targets), stamp(in.Now.Add(wait))))
	}
	if wait > 0 {
		dep := img.DeprecatedAt
		if dep.IsZero() || dep.After(in.Now) {
			d.DeprecateAt = in.Now
			return withDetail(ReasonDeprecating, "deprecated now; deleted after "+stamp(in.Now.Add(wait)))
		}
		if in.Now.Before(dep.Add(wait)) {
			return withDetail(ReasonGracePeriod, fmt.Sprintf("deprecated since %s; deleted after %s", stamp(dep), stamp(dep.Add(wait))))
		}
	}
	if checkUsage {
		// Only a report made once the grace period was over can show usage
		// that began before sharing stopped.
		since := img.DeprecatedAt.Add(grace)
		if why := usage(in, img, d, since); why != "" {
			return why
		}
	}
	return ""
}

// usage returns "" when a settled usage report made after since (and
// recently) shows no other account using img, else why it stays; it asks
// for a new report (d.RequestUsageReport) when none is usable or coming.
func usage(in PlanInput, img *Image, d *Decision, since time.Time) string {
	if err, failed := in.UsageErrors[img.ID]; failed {
		return withDetail(ReasonUsageUnknown, "reading its usage reports failed: "+err)
	}
	reports, read := in.Usage[img.ID]
	if !read {
		d.Needs = NeedUsage
		return withDetail(ReasonUsageUnknown, "its usage reports were not read")
	}
	// Reports are judged at the time they were read: a backdated rotation
	// still reads today's reports.
	now := in.UsageReadAt
	if now.IsZero() {
		now = in.Now
	}
	oldest := now.Add(-UsageReportMaxAge)
	if since.After(oldest) {
		oldest = since
	}
	var (
		ignored  int
		clean    string // a settled report showing no use
		used     = map[string]int64{}
		waiting  string // why a coming report is awaited
		failures []string
	)
	for _, r := range reports {
		if r.ImageID != img.ID || len(r.AccountIDs) > 0 ||
			!slices.Contains(r.ResourceTypes, UsageInstance) || !slices.Contains(r.ResourceTypes, UsageLaunchTemplate) ||
			r.Created.Before(oldest) || r.Created.After(now) {
			// For another image, limited to some accounts or resource
			// types, stale, or made before sharing stopped long enough.
			ignored++
			continue
		}
		switch r.State {
		case "available":
			if now.Sub(r.Created) < UsageReportSettle {
				waiting = fmt.Sprintf("usage report %s is trusted from %s", r.ID, stamp(r.Created.Add(UsageReportSettle)))
				continue
			}
			n := 0
			for _, e := range r.Entries {
				// An entry of this image counts whichever report it names:
				// one that does not say which report it is from cannot be
				// proven stale.
				if e.ImageID != img.ID || e.Count <= 0 {
					continue
				}
				used[e.AccountID+": "+resourceNoun(e.ResourceType)] += e.Count
				n++
			}
			if n == 0 {
				clean = r.ID
			}
		case "pending":
			if now.Sub(r.Created) < UsageReportTimeout {
				waiting = fmt.Sprintf("usage report %s pending since %s", r.ID, stamp(r.Created))
			} else {
				failures = append(failures, fmt.Sprintf("usage report %s timed out (pending since %s)", r.ID, stamp(r.Created)))
			}
		default:
			failures = append(failures, fmt.Sprintf("usage report %s failed: %s", r.ID, cmpOr(r.Reason, r.State)))
		}
	}
	if len(used) > 0 {
		var uses []string
		for who, n := range used {
			account, noun, _ := strings.Cut(who, ": ")
			uses = append(uses, fmt.Sprintf("account %s: %d %s", account, n, noun))
		}
		return withDetail(ReasonInUseElsewhere, describeReferences(uses))
	}
	if clean != "" {
		return ""
	}
	var why []string
	if waiting != "" {
		why = append(why, waiting)
	} else {
		d.RequestUsageReport = true
		why = append(why, "a usage report was requested")
	}
	why = append(why, failures...)
	if ignored > 0 {
		why = append(why, fmt.Sprintf("%d report(s) ignored (stale, partial, for another image or made before %s)", ignored, stamp(oldest)))
	}
	return withDetail(ReasonUsageUnknown, strings.Join(why, "; "))
}

func resourceNoun(t string) string {
	switch t {
	case UsageInstance:
		return "instance(s)"
	case UsageLaunchTemplate:
		return "launch template(s)"
	}
	return t
}

func describeTargets(ts []string) string {
	return describeReferences(ts)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04Z") }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
