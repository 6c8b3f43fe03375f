package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

const (
	testOrg  = "arn:aws:organizations::111111111111:organization/o-abcdefghij"
	testOU   = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"
	consumer = "222233334444"
)

// sharedWorld is a world on a clock the test moves forward by days, with a
// consumer account in the OU the policy shares with.
type sharedWorld struct {
	*world
	clock *ec2sim.ShiftedClock
	r     *localrun.Runner
}

func newSharedWorld(t *testing.T) *sharedWorld {
	clock := ec2sim.NewShiftedClock()
	w := newWorld(t, ec2sim.Options{Regions: []string{home}, Clock: clock})
	w.sim.JoinOrganization(consumer, testOrg, testOU)
	env := steps.Env{Now: clock.Now}
	r := w.runner(func(o *localrun.Options) {
		o.Handlers = localrun.StepHandlers(w.clients, env)
		// The execution starts at the simulated time, as it would on that day.
		discover := steps.NewDiscover(w.clients.As(ec2x.StepDiscover), env)
		o.Handlers[ec2x.StepDiscover] = func(ctx context.Context, in steps.DiscoverIn) (steps.DiscoverOut, error) {
			in.StartTime = clock.Now()
			return discover.Handle(ctx, in)
		}
		o.DetailStates = []string{"Retention", "Report"}
	})
	return &sharedWorld{world: w, clock: clock, r: r}
}

func sharedPolicy() rotation.Policy {
	return rotation.Policy{
		Name:                "web",
		Selector:            rotation.Selector{Tags: map[string]string{"amirotate:policy": "web"}},
		Retention:           rotation.Retention{Keep: 1},
		ShareWith:           []string{testOU},
		ShareGraceDays:      3,
		PollIntervalSeconds: 15,
		TimeoutMinutes:      30,
	}
}

// rotate runs one scheduled rotation now (simulated) and returns the kept
// reasons and deletions of its retention pass.
func (w *sharedWorld) rotate(p rotation.Policy) (kept map[string]string, deleted []string) {
	w.t.Helper()
	res, sum := w.run(w.r, scheduled(p, w.clock.Now().Truncate(time.Minute)))
	if err := res.Check(); err != nil || sum.Failed {
		w.t.Fatalf("rotation: %v %+v", err, sum)
	}
	kept = map[string]string{}
	for _, raw := range res.DetailOutputs["Retention"] {
		var b steps.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			w.t.Fatal(err)
		}
		for _, rep := range b.Retention {
			for id, why := range rep.Kept {
				kept[id] = why
			}
			deleted = append(deleted, rep.Deleted...)
		}
	}
	return kept, deleted
}

// onlyImage is the one image of the world's one instance, after its first
// rotation.
func (w *sharedWorld) onlyImage() string {
	w.t.Helper()
	for _, ims := range w.images(home, "web") {
		if len(ims) == 1 {
			return aws.ToString(ims[0].ImageId)
		}
	}
	w.t.Fatalf("want one image of one instance: %v", w.images(home, "web"))
	return ""
}

func (w *sharedWorld) launchPermissions(image string) []string {
	w.t.Helper()
	out, err := w.clients.EC2(home).DescribeImageAttribute(context.Background(), &ec2.DescribeImageAttributeInput{
		ImageId: aws.String(image), Attribute: types.ImageAttributeNameLaunchPermission})
	if err != nil {
		w.t.Fatal(err)
	}
	var got []string
	for _, lp := range out.LaunchPermissions {
		got = append(got, aws.ToString(lp.UserId)+aws.ToString(lp.OrganizationArn)+aws.ToString(lp.OrganizationalUnitArn)+string(lp.Group))
	}
	return got
}

func (w *sharedWorld) exists(image string) bool {
	w.t.Helper()
	out, err := w.clients.EC2(home).DescribeImages(context.Background(), &ec2.DescribeImagesInput{
		Owners: []string{"self"}, Filters: []types.Filter{ec2x.Filter("image-id", image)}, IncludeDeprecated: aws.Bool(true)})
	if err != nil {
		w.t.Fatal(err)
	}
	return len(out.Images) == 1
}

func wantReason(t *testing.T, kept map[string]string, image, code, detail string) {
	t.Helper()
	why, ok := kept[image]
	t.Logf("%s: %s", image, why)
	if !ok || rotation.ReasonCode(why) != code || !strings.Contains(why, detail) {
		t.Fatalf("%s kept %v with %q; want %s containing %q (all: %v)", image, ok, why, code, detail, kept)
	}
}

func TestSharing_ImageUsedByAConsumerIsKeptUntilUnusedAndPastTheGracePeriod(t *testing.T) {
	w := newSharedWorld(t)
	w.instances(1, "web")
	p := sharedPolicy()
	day := 24 * time.Hour

	w.rotate(p)
	first := w.onlyImage()
	if got := w.launchPermissions(first); len(got) != 1 || got[0] != testOU {
		t.Fatalf("the new image's launch permissions = %v, want the OU", got)
	}
	lt, err := w.sim.ConsumerLaunchTemplate(home, consumer, first)
	if err != nil {
		t.Fatalf("an account of the OU cannot use the shared image: %v", err)
	}

	// Four days on, the image is past its retention: nothing says yet
	// whether other accounts use it; a usage report is requested.
	w.clock.Advance(4 * day)
	kept, deleted := w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "requested")
	// Two hours later the report shows the consumer's launch template.
	w.clock.Advance(2 * time.Hour)
	kept, deleted = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonInUseElsewhere, "account "+consumer+": 1 launch template(s)")
	if got := w.launchPermissions(first); len(got) != 1 {
		t.Fatalf("an image in use elsewhere stopped being shared: %v", got)
	}

	// The consumer moves on. Once the report showing its use is stale, a
	// new one shows none: sharing stops and the image is deprecated.
	w.sim.RemoveConsumerUse(home, lt)
	w.clock.Advance(3 * day)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "requested")
	w.clock.Advance(2 * time.Hour)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonSharingStopped, "launch permissions ("+testOU+") removed")
	if got := w.launchPermissions(first); len(got) != 0 {
		t.Fatalf("launch permissions after sharing stopped: %v", got)
	}
	// Within the grace period it stays.
	w.clock.Advance(2 * day)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonGracePeriod, "deprecated since")
	// After it, a report made after the grace period decides: requested,
	// then read, then the image goes.
	w.clock.Advance(day + time.Hour)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "requested")
	w.clock.Advance(2 * time.Hour)
	_, deleted = w.rotate(p)
	if !contains(deleted, first) || w.exists(first) {
		t.Fatalf("the unused image past its grace period was not deleted: deleted %v", deleted)
	}
}

func TestSharing_AReportThatFailsOrTimesOutKeepsTheImage(t *testing.T) {
	w := newSharedWorld(t)
	w.instances(1, "web")
	p := sharedPolicy()
	w.rotate(p)
	first := w.onlyImage()

	w.sim.SetUsageReports(ec2sim.UsageReportBehaviour{Fail: "InternalError: the report could not be created"})
	w.clock.Advance(4 * 24 * time.Hour)
	w.rotate(p)
	w.clock.Advance(2 * time.Hour)
	kept, _ := w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "failed: InternalError")

	w.sim.SetUsageReports(ec2sim.UsageReportBehaviour{Stuck: true})
	w.clock.Advance(2 * time.Hour)
	w.rotate(p) // requests a report that never finishes
	w.clock.Advance(2 * time.Hour)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "pending since")
	w.clock.Advance(25 * time.Hour)
	kept, deleted := w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "timed out")
	if contains(deleted, first) || !w.exists(first) || len(w.launchPermissions(first)) != 1 {
		t.Fatalf("an image whose usage is unknown was deleted or unshared")
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestSharing_AnImageEncryptedWithTheAWSManagedKeyIsRefused(t *testing.T) {
	w := newSharedWorld(t)
	managed, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{"amirotate:policy": "web"}, Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	res, sum := w.run(w.r, scheduled(sharedPolicy(), w.clock.Now().Truncate(time.Minute)))
	if len(sum.Problems) != 1 || sum.Problems[0].InstanceID != managed || sum.Problems[0].Outcome != steps.OutcomeRefused ||
		!strings.Contains(sum.Problems[0].Reason, "AWS managed key aws/ebs") || !strings.Contains(sum.Problems[0].Reason, "copyTo[].kmsKeyId") {
		t.Fatalf("execution %s; summary %+v", res.Status, sum)
	}
	t.Logf("%s: %s", managed, sum.Problems[0].Reason)
	if n := len(w.images(home, "web")); n != 0 || w.sim.Stats().FirstAttempts().Calls[home]["CreateImage"] != 0 {
		t.Fatalf("images were made for an instance encrypted with aws/ebs: %d", n)
	}
}

// An image someone shared by hand, of a policy that shares with no one:
// retention checks its use, stops sharing it, and then waits out the grace
// period before deleting it, as for a policy that shares. Once unshared
// it looks like any unshared image; its usage report says it was shared.
func TestSharing_AnImageSharedByHandSitsOutTheGracePeriodAfterRetentionUnsharesIt(t *testing.T) {
	w := newSharedWorld(t)
	w.instances(1, "web")
	p := sharedPolicy()
	p.ShareWith = nil
	day := 24 * time.Hour

	w.rotate(p)
	first := w.onlyImage()
	if _, err := w.clients.EC2(home).ModifyImageAttribute(context.Background(), &ec2.ModifyImageAttributeInput{ImageId: aws.String(first),
		LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{UserId: aws.String(consumer)}}}}); err != nil {
		t.Fatal(err)
	}

	w.clock.Advance(4 * day)
	kept, _ := w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "requested")
	w.clock.Advance(2 * time.Hour)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonSharingStopped, "launch permissions ("+consumer+") removed")
	// The next day it is not shared any more, and still in its grace period.
	w.clock.Advance(day)
	kept, deleted := w.rotate(p)
	if contains(deleted, first) {
		t.Fatalf("the image retention unshared yesterday was deleted without its grace period")
	}
	wantReason(t, kept, first, rotation.ReasonGracePeriod, "deprecated since")
	// After the grace period, a report made then decides.
	w.clock.Advance(2*day + time.Hour)
	kept, _ = w.rotate(p)
	wantReason(t, kept, first, rotation.ReasonUsageUnknown, "requested")
	w.clock.Advance(2 * time.Hour)
	_, deleted = w.rotate(p)
	if !contains(deleted, first) || w.exists(first) {
		t.Fatalf("the unused image past its grace period was not deleted: deleted %v", deleted)
	}
}
