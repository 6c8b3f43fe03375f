package rotation

import (
	"strings"
	"testing"
	"time"
)

const (
	testOU       = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"
	consumerAcct = "444455556666"
)

// sharedPolicy keeps the newest image; grace 7 days.
func sharedPolicy() Policy {
	p := policyKeep(1, 0)
	p.ShareWith = []string{testOU}
	return p
}

func deprecated(daysAgo int) func(*Image) {
	return func(i *Image) { i.DeprecatedAt = planNow.Add(-time.Duration(daysAgo) * 24 * time.Hour) }
}

func sharedWith(targets ...string) func(*Image) {
	return func(i *Image) { i.Sharing = &Sharing{Targets: targets} }
}

func report(id, image string, age time.Duration, state string, uses ...UsageEntry) UsageReport {
	for i := range uses {
		uses[i].ReportID, uses[i].ImageID = id, image
	}
	return UsageReport{ID: id, ImageID: image, State: state, Created: planNow.Add(-age),
		ResourceTypes: []string{UsageInstance, UsageLaunchTemplate}, Entries: uses}
}

const testInst = "i-0123456789abcdef0"

var launchTemplateUse = UsageEntry{AccountID: consumerAcct, ResourceType: UsageLaunchTemplate, Count: 1}

// retireOne plans one expired image (and a newer one) with the given usage
// reports, and returns the old image's decision.
func retireOne(t *testing.T, p Policy, old Image, reports []UsageReport) Decision {
	t.Helper()
	in := PlanInput{Policy: p, Now: planNow, Images: []Image{image("ami-new", "us-east-1", testInst, 1), old}}
	// nil reports: not read.
	in.Usage = map[string][]UsageReport{"ami-new": {}}
	if reports != nil {
		in.Usage[old.ID] = reports
	}
	return plan(t, in)[old.ID]
}

func TestRetire_ASharedImageIsKeptUntilUsageIsKnown(t *testing.T) {
	old := func(opts ...func(*Image)) Image { return image("ami-old", "us-east-1", testInst, 30, opts...) }
	settled := 2 * time.Hour
	cases := []struct {
		name       string
		img        Image
		reports    []UsageReport
		want       string
		request    bool
		unshare    bool
		deprecate  bool
		needs      string
		detailHas  string
		deleteWant bool
	}{
		{name: "launch permissions not read", img: old(func(i *Image) { i.Sharing = nil }), want: ReasonSharingUnknown, needs: NeedSharing},
		{name: "usage not read", img: old(sharedWith(testOU)), want: ReasonUsageUnknown, needs: NeedUsage},
		{name: "shared, no report yet", img: old(sharedWith(testOU)), reports: []UsageReport{}, want: ReasonUsageUnknown, request: true, detailHas: "requested"},
		{name: "shared, used by a launch template elsewhere", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", settled, "available", launchTemplateUse)}, want: ReasonInUseElsewhere, detailHas: "account " + consumerAcct + ": 1 launch template(s)"},
		{name: "shared, unused: sharing stops and deprecation starts", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", settled, "available")}, want: ReasonSharingStopped, unshare: true, deprecate: true},
		{name: "report failed", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", settled, "error")}, want: ReasonUsageUnknown, request: true, detailHas: "failed"},
		{name: "report pending", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", settled, "pending")}, want: ReasonUsageUnknown, detailHas: "pending since"},
		{name: "report timed out", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", 25*time.Hour, "pending")}, want: ReasonUsageUnknown, request: true, detailHas: "timed out"},
		{name: "report stale", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", 4*24*time.Hour, "available")}, want: ReasonUsageUnknown, request: true, detailHas: "ignored"},
		{name: "report of another image", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-other", settled, "available")}, want: ReasonUsageUnknown, request: true, detailHas: "ignored"},
		{name: "report limited to some accounts", img: old(sharedWith(testOU)),
			reports: []UsageReport{func() UsageReport {
				r := report("r1", "ami-old", settled, "available")
				r.AccountIDs = []string{"111122223333"}
				return r
			}()},
			want: ReasonUsageUnknown, request: true},
		{name: "report without launch templates", img: old(sharedWith(testOU)),
			reports: []UsageReport{func() UsageReport {
				r := report("r1", "ami-old", settled, "available")
				r.ResourceTypes = []string{UsageInstance}
				return r
			}()},
			want: ReasonUsageUnknown, request: true},
		{name: "report available but too young for its entries", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", 10*time.Minute, "available")}, want: ReasonUsageUnknown, detailHas: "trusted from"},
		{name: "a clean report and one showing use", img: old(sharedWith(testOU)),
			reports: []UsageReport{report("r1", "ami-old", settled, "available"), report("r2", "ami-old", 3*time.Hour, "available", launchTemplateUse)}, want: ReasonInUseElsewhere},
		{name: "unshared, deprecated too recently", img: old(deprecated(2)), reports: []UsageReport{report("r1", "ami-old", settled, "available")},
			want: ReasonGracePeriod, detailHas: "deleted after"},
		{name: "unshared, not deprecated: deprecation starts", img: old(), want: ReasonDeprecating, deprecate: true},
		{name: "unshared past the grace period, report made before it ended", img: old(deprecated(8)),
			reports: []UsageReport{report("r1", "ami-old", 30*time.Hour, "available")}, want: ReasonUsageUnknown, request: true, detailHas: "ignored"},
		{name: "unshared past the grace period, used elsewhere", img: old(deprecated(8)),
			reports: []UsageReport{report("r1", "ami-old", settled, "available", UsageEntry{AccountID: consumerAcct, ResourceType: UsageInstance, Count: 2})},
			want:    ReasonInUseElsewhere, detailHas: "2 instance(s)"},
		{name: "unshared past the grace period, an entry naming another report still counts", img: old(deprecated(8)),
			reports: []UsageReport{func() UsageReport {
				r := report("r1", "ami-old", settled, "available")
				r.Entries = []UsageEntry{{ReportID: "r9", ImageID: "ami-old", AccountID: consumerAcct, ResourceType: UsageInstance, Count: 1}}
				return r
			}()}, want: ReasonInUseElsewhere},
		{name: "unshared past the grace period, entries of another image ignored", img: old(deprecated(8)),
			reports: []UsageReport{func() UsageReport {
				r := report("r1", "ami-old", settled, "available")
				r.Entries = []UsageEntry{{ReportID: "r1", ImageID: "ami-other", AccountID: consumerAcct, ResourceType: UsageInstance, Count: 1}}
				return r
			}()}, want: ReasonExpired, deleteWant: true},
		{name: "unshared past the grace period, unused", img: old(deprecated(8)),
			reports: []UsageReport{report("r1", "ami-old", settled, "available")}, want: ReasonExpired, deleteWant: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := retireOne(t, sharedPolicy(), tc.img, tc.reports)
			if ReasonCode(d.Reason) != tc.want || d.Delete != tc.deleteWant {
				t.Fatalf("delete=%v reason=%q, want %s", d.Delete, d.Reason, tc.want)
			}
			if !strings.Contains(d.Reason, tc.detailHas) {
				t.Errorf("reason %q does not say %q", d.Reason, tc.detailHas)
			}
			if d.RequestUsageReport != tc.request || (len(d.Unshare) > 0) != tc.unshare || !d.DeprecateAt.IsZero() != tc.deprecate || d.Needs != tc.needs {
				t.Errorf("actions: request %v unshare %v deprecate %v needs %q; want %v %v %v %q",
					d.RequestUsageReport, d.Unshare, d.DeprecateAt, d.Needs, tc.request, tc.unshare, tc.deprecate, tc.needs)
			}
		})
	}
}

func TestRetire_ImageSharedByHandIsCheckedToo(t *testing.T) {
	// The policy shares with no one, but someone shared the image.
	d := retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30, sharedWith(consumerAcct)), []UsageReport{})
	if d.Delete || ReasonCode(d.Reason) != ReasonUsageUnknown || !d.RequestUsageReport {
		t.Fatalf("%+v", d)
	}
	// Not shared, policy shares with no one, no usage report: deleted at once.
	d = retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30), []UsageReport{})
	if !d.Delete {
		t.Fatalf("%+v", d)
	}
	// Its usage reports not read: kept until they are.
	d = retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30), nil)
	if d.Delete || d.Needs != NeedUsage {
		t.Fatalf("usage not read: %+v", d)
	}
	// Retention stopped sharing it yesterday (it has the report that showed
	// no use, and was deprecated then): it sits out the grace period, then
	// a report made after it decides, as for a policy that shares.
	clean := report("r1", "ami-old", 26*time.Hour, "available")
	d = retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30, deprecated(1)), []UsageReport{clean})
	if d.Delete || ReasonCode(d.Reason) != ReasonGracePeriod {
		t.Fatalf("unshared by retention yesterday: %+v", d)
	}
	d = retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30, deprecated(8)), []UsageReport{clean})
	if d.Delete || ReasonCode(d.Reason) != ReasonUsageUnknown || !d.RequestUsageReport {
		t.Fatalf("past the grace period, only a report from before it: %+v", d)
	}
	d = retireOne(t, policyKeep(1, 0), image("ami-old", "us-east-1", testInst, 30, deprecated(8)), []UsageReport{report("r2", "ami-old", 2*time.Hour, "available")})
	if !d.Delete {
		t.Fatalf("past the grace period, a clean report made after it: %+v", d)
	}
}

func TestRetire_DeprecateBeforeDelete(t *testing.T) {
	p := policyKeep(1, 0)
	p.DeprecateBeforeDeleteDays = 5
	d := retireOne(t, p, image("ami-old", "us-east-1", testInst, 30), []UsageReport{})
	if d.Delete || ReasonCode(d.Reason) != ReasonDeprecating || !d.DeprecateAt.Equal(planNow) {
		t.Fatalf("not deprecated yet: %+v", d)
	}
	d = retireOne(t, p, image("ami-old", "us-east-1", testInst, 30, deprecated(4)), []UsageReport{})
	if d.Delete || ReasonCode(d.Reason) != ReasonGracePeriod {
		t.Fatalf("deprecated 4 days ago: %+v", d)
	}
	// A deprecation in the future (deprecateAfterDays not reached) is moved to now.
	d = retireOne(t, p, image("ami-old", "us-east-1", testInst, 30, deprecated(-3)), []UsageReport{})
	if d.Delete || ReasonCode(d.Reason) != ReasonDeprecating {
		t.Fatalf("deprecation ahead: %+v", d)
	}
	d = retireOne(t, p, image("ami-old", "us-east-1", testInst, 30, deprecated(5)), []UsageReport{})
	if !d.Delete {
		t.Fatalf("deprecated 5 days ago: %+v", d)
	}
}
