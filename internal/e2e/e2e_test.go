// Package e2e runs whole rotations through the real state machine
// definition, the local Step Functions runner (node), lambdahost, the real
// step handlers and the EC2/SSM simulator: what AWS would run, minus AWS.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

const (
	home = "us-east-1"
	// Step Functions' limit on any state's input or output.
	payloadLimit = 262144
)

var regions = []string{home, "eu-west-1", "ap-southeast-2"}

type world struct {
	t       *testing.T
	sim     *ec2sim.Sim
	clients *ec2x.Clients
}

func newWorld(t *testing.T, opts ec2sim.Options) *world {
	t.Helper()
	if opts.Regions == nil {
		opts.Regions = regions
	}
	if opts.ImageDelay == 0 {
		opts.ImageDelay = 100 * time.Millisecond
	}
	if opts.CopyDelay == 0 {
		opts.CopyDelay = 100 * time.Millisecond
	}
	sim := ec2sim.New(opts)
	// The simulator enforces the synthesized roles and each step calls as
	// its own: any denial fails the test.
	iam, err := iamsim.Enforce(sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := iam.DenialsError(); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       home,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDLOCAL", "local", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	// The SDK's throttle backoff is seconds; a millisecond one keeps a
	// storm's many retries inside the test's time (attempts and quota unchanged).
	fast := retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	// Unpaced: images take milliseconds here, and pacing by EC2's real-time
	// refill rates would stretch a 1,000-instance rotation to many minutes.
	return &world{t: t, sim: sim, clients: ec2x.NewClients(cfg, ec2x.WithBackoff(fast), ec2x.WithoutPacing(), ec2x.WithLocalIdentities())}
}

func (w *world) instances(n int, policy string) []string {
	w.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		id, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{
			"amirotate:policy": policy, "Name": fmt.Sprintf("%s-%d", policy, i),
		}})
		if err != nil {
			w.t.Fatal(err)
		}
		ids[i] = id
	}
	sort.Strings(ids)
	return ids
}

func policy(name string) rotation.Policy {
	return rotation.Policy{
		Name:      name,
		Selector:  rotation.Selector{Tags: map[string]string{"amirotate:policy": name}},
		CopyTo:    []rotation.CopyTarget{{Region: "eu-west-1"}, {Region: "ap-southeast-2"}},
		Retention: rotation.Retention{Keep: 2},
		Publish:   rotation.Publish{SSMParameter: "/amirotate/{policy}/{instanceId}/latest", LaunchTemplates: true},
		// The first wait; the runner's override makes every wait short anyway.
		PollIntervalSeconds: 15,
		TimeoutMinutes:      30,
	}
}

func scheduled(p rotation.Policy, at time.Time) map[string]any {
	return map[string]any{"policy": p, "trigger": "schedule", "scheduledTime": at.UTC().Format(time.RFC3339)}
}

type runOpt func(*localrun.Options)

// waits sets the runner's Wait duration (milliseconds).
func waits(ms int) runOpt { return func(o *localrun.Options) { o.WaitMs = &ms } }

func (w *world) runner(opts ...runOpt) *localrun.Runner {
	w.t.Helper()
	waitMs, retryMs := 50, 20
	o := localrun.Options{
		Handlers: localrun.StepHandlers(w.clients, steps.Env{}),
		WaitMs:   &waitMs,
		RetryMs:  &retryMs,
	}
	for _, f := range opts {
		f(&o)
	}
	r, err := localrun.New(o)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) run(r *localrun.Runner, input any) (*localrun.Result, steps.Summary) {
	w.t.Helper()
	raw, err := json.Marshal(input)
	if err != nil {
		w.t.Fatal(err)
	}
	// Generous: a loaded 2-core machine under -race runs the 1,000-instance
	// rotation in about a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, raw)
	if err != nil {
		w.t.Fatal(err)
	}
	var out steps.ReportOut
	if reports := res.DetailOutputs["Report"]; len(reports) == 1 {
		if err := json.Unmarshal(reports[0], &out); err != nil {
			w.t.Fatal(err)
		}
	} else {
		w.t.Fatalf("execution %s (%s: %s) without one Report", res.Status, res.Error, res.Cause)
	}
	if res.MaxPayloadBytes >= payloadLimit {
		w.t.Errorf("state %s had a %d-byte payload, over Step Functions' %d", res.MaxPayloadState, res.MaxPayloadBytes, payloadLimit)
	}
	w.t.Logf("%s in %v: %d transitions, %d Map iterations, %d retries, largest payload %d bytes (%s)",
		res.Status, res.Duration.Round(time.Millisecond), res.Transitions, res.MapIterations, res.Retries, res.MaxPayloadBytes, res.MaxPayloadState)
	return res, out.Summary
}

// images lists the managed images of a policy in a region, by instance;
// only those of the given instances when there are any.
func (w *world) images(region, policy string, instanceIDs ...string) map[string][]types.Image {
	w.t.Helper()
	out := map[string][]types.Image{}
	filters := []types.Filter{{Name: aws.String("tag:amirotate:policy"), Values: []string{policy}}}
	if len(instanceIDs) > 0 {
		filters = append(filters, types.Filter{Name: aws.String("tag:amirotate:instance-id"), Values: instanceIDs})
	}
	p := ec2.NewDescribeImagesPaginator(w.clients.EC2(region), &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: filters,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			w.t.Fatal(err)
		}
		for _, im := range page.Images {
			id := tag(im.Tags, "amirotate:instance-id")
			out[id] = append(out[id], im)
		}
	}
	return out
}

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

func rotationOf(im types.Image) string { return tag(im.Tags, "amirotate:rotation") }

// expectImages checks every region holds exactly the given rotations'
// available images for each instance.
func (w *world) expectImages(policyName string, ids []string, rotations ...string) {
	w.t.Helper()
	for _, region := range regions {
		got := w.images(region, policyName, ids...)
		for _, id := range ids {
			var have []string
			for _, im := range got[id] {
				if im.State != types.ImageStateAvailable {
					w.t.Errorf("%s %s: image %s is %s", region, id, aws.ToString(im.ImageId), im.State)
				}
				have = append(have, rotationOf(im))
			}
			sort.Strings(have)
			if !slices.Equal(have, rotations) {
				w.t.Errorf("%s %s: images of rotations %v, want %v", region, id, have, rotations)
			}
		}
	}
}

func (w *world) ssmValue(region, name string) (string, int64) {
	w.t.Helper()
	out, err := w.clients.SSM(region).GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil {
		w.t.Fatalf("ssm %s %s: %v", region, name, err)
	}
	return aws.ToString(out.Parameter.Value), out.Parameter.Version
}

func (w *world) launchTemplate(instanceID string) string {
	w.t.Helper()
	out, err := w.clients.EC2(home).CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("web-" + instanceID),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String("ami-00000000000000000"), InstanceType: types.InstanceTypeT3Micro},
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeLaunchTemplate,
			Tags:         []types.Tag{{Key: aws.String("amirotate:track"), Value: aws.String(instanceID)}},
		}},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
}

func (w *world) launchTemplateDefault(id string) (string, int64) {
	w.t.Helper()
	out, err := w.clients.EC2(home).DescribeLaunchTemplateVersions(context.Background(), &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: aws.String(id), Versions: []string{"$Default"},
	})
	if err != nil || len(out.LaunchTemplateVersions) != 1 {
		w.t.Fatalf("launch template %s: %v", id, err)
	}
	v := out.LaunchTemplateVersions[0]
	return aws.ToString(v.LaunchTemplateData.ImageId), aws.ToInt64(v.VersionNumber)
}

func newest(ims []types.Image, rot string) string {
	for _, im := range ims {
		if rotationOf(im) == rot {
			return aws.ToString(im.ImageId)
		}
	}
	return ""
}

var t0 = time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)

const rot0Layout = "20060102T1504Z"

func TestRotation_HappyPathCopiesAndPublishes(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(3, "web")
	lt := w.launchTemplate(ids[0])
	p := policy("web")
	p.Publish.AdoptLaunchTemplates = []string{lt} // it launches a base image, not amirotate's

	res, sum := w.run(w.runner(), scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	rot := t0.Format(rot0Layout)
	if sum.Instances != 3 || sum.Outcomes[steps.OutcomeOK] != 3 || sum.ImagesCreated != 3 || sum.CopiesCreated != 6 || sum.Failed {
		t.Fatalf("summary %+v", sum)
	}
	w.expectImages("web", ids, rot)
	for _, region := range regions {
		got := w.images(region, "web")
		for _, id := range ids {
			v, _ := w.ssmValue(region, "/amirotate/web/"+id+"/latest")
			if want := newest(got[id], rot); v != want {
				t.Errorf("ssm %s %s = %q, want %q", region, id, v, want)
			}
		}
	}
	image, version := w.launchTemplateDefault(lt)
	if want := newest(w.images(home, "web")[ids[0]], rot); image != want || version != 2 {
		t.Errorf("launch template default: version %d image %s, want version 2 image %s", version, image, want)
	}
	if len(res.Events) != 1 || res.Events[0].DetailType != "AMI Rotation Completed" {
		t.Errorf("events %+v", res.Events)
	}
}

func TestRotation_TagChangeRotatesJustThatInstance(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(3, "web")
	p := policy("web")
	at := t0.Add(17 * time.Minute)
	event := map[string]any{
		"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
		"detail-type": "Tag Change on Resource", "source": "aws.tag",
		"account": ec2sim.AccountID, "time": at.Format(time.RFC3339), "region": home,
		"resources": []string{fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", home, ec2sim.AccountID, ids[1])},
		"detail": map[string]any{
			"changed-tag-keys": []string{"amirotate:rebuild"}, "service": "ec2", "resource-type": "instance",
			"version": 2, "tags": map[string]string{"amirotate:policy": "web", "amirotate:rebuild": "1"},
		},
	}
	res, sum := w.run(w.runner(), map[string]any{"policy": p, "trigger": "tag-change", "event": event})
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Instances != 1 || sum.Outcomes[steps.OutcomeOK] != 1 || sum.Trigger != rotation.TriggerTagChange {
		t.Fatalf("summary %+v", sum)
	}
	w.expectImages("web", ids[1:2], at.Format(rot0Layout))
	w.expectImages("web", []string{ids[0], ids[2]})
}

func TestRotation_FailedImageIsCleanedUpAndHeld(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(3, "web")
	p := policy("web")
	p.Retention = rotation.Retention{Keep: 1}
	day1, day2 := t0.Add(-24*time.Hour), t0

	res, _ := w.run(w.runner(), scheduled(p, day1))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	w.sim.FailNextImage(home, ids[1], "Client.InternalError: the instance's volume could not be read")
	res, sum := w.run(w.runner(), scheduled(p, day2))

	if res.Status != localrun.StatusFailed || res.Error != "RotationFailed" || !strings.Contains(res.Cause, "1 of 3 instances") {
		t.Fatalf("execution %s %s: %s", res.Status, res.Error, res.Cause)
	}
	if sum.Outcomes[steps.OutcomeOK] != 2 || sum.Outcomes[steps.OutcomeFailed] != 1 || len(sum.Problems) != 1 || sum.Problems[0].InstanceID != ids[1] {
		t.Fatalf("summary %+v", sum)
	}
	r1, r2 := day1.Format(rot0Layout), day2.Format(rot0Layout)
	// keep 1: the others lost day 1; the failed instance keeps day 1 and has
	// no trace of its failed day-2 image.
	w.expectImages("web", []string{ids[0], ids[2]}, r2)
	w.expectImages("web", ids[1:2], r1)
	for _, region := range regions {
		snaps, err := w.clients.EC2(region).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{
			OwnerIds: []string{"self"},
			Filters: []types.Filter{
				{Name: aws.String("tag:amirotate:instance-id"), Values: []string{ids[1]}},
				{Name: aws.String("tag:amirotate:rotation"), Values: []string{r2}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps.Snapshots) != 0 {
			t.Errorf("%s: the failed image's snapshots remain: %d", region, len(snaps.Snapshots))
		}
	}
}

func TestRotation_ThrottlingStormAndACrashAreRetried(t *testing.T) {
	w := newWorld(t, ec2sim.Options{Throttling: true})
	ids := w.instances(6, "web")
	p := policy("web")
	p.BatchSize = 3
	if err := w.sim.Inject(ec2sim.Fault{Code: "RequestLimitExceeded", Message: "Request limit exceeded.", Status: 503, Probability: 0.3}); err != nil {
		t.Fatal(err)
	}
	r := w.runner()
	// Lambda itself throttles tag past the SDK's own 3 attempts: 5 refusals
	// over the two batches' concurrent calls leave at least one call
	// refused 3 times, which the state machine sees as
	// Lambda.TooManyRequestsException and retries.
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-tag", Count: 5, ServiceError: "TooManyRequestsException"})
	// The runtime dies after CreateImage went through: the retry must adopt
	// the images, not make new ones.
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-snapshot", Count: 1, AfterHandler: true})
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-copy", Count: 1})

	res, sum := w.run(r, scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != 6 {
		t.Fatalf("summary %+v", sum)
	}
	if st := w.sim.Stats(); st.Faulted+st.Throttled == 0 {
		t.Fatal("no request was throttled: the storm did not happen")
	}
	if res.Lambda.Errors["amirotate-snapshot"] == 0 || res.Lambda.Errors["amirotate-copy"] == 0 || res.Lambda.Errors["amirotate-tag"] != 5 || res.Retries < 3 {
		t.Fatalf("crashes not seen: retries %d, lambda %+v", res.Retries, res.Lambda)
	}
	w.expectImages("web", ids, t0.Format(rot0Layout))
}

func TestRotation_SameRotationTwiceCreatesNothingTwice(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(2, "web")
	lt := w.launchTemplate(ids[0])
	p := policy("web")
	p.Publish.AdoptLaunchTemplates = []string{lt}
	in := scheduled(p, t0)

	res, _ := w.run(w.runner(), in)
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	_, ltVersion := w.launchTemplateDefault(lt)
	_, ssmVersion := w.ssmValue(home, "/amirotate/web/"+ids[1]+"/latest")
	before := w.sim.Stats()

	res, sum := w.run(w.runner(), in)
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != 2 || sum.Published != 0 {
		t.Fatalf("second run summary %+v", sum)
	}
	w.expectImages("web", ids, t0.Format(rot0Layout))
	if _, v := w.launchTemplateDefault(lt); v != ltVersion {
		t.Errorf("launch template version %d after the rerun, was %d", v, ltVersion)
	}
	if _, v := w.ssmValue(home, "/amirotate/web/"+ids[1]+"/latest"); v != ssmVersion {
		t.Errorf("ssm version %d after the rerun, was %d", v, ssmVersion)
	}
	after := w.sim.Stats()
	for _, action := range []string{"CopyImage", "CreateLaunchTemplateVersion", "ssm:PutParameter", "DeregisterImage"} {
		if n := after.Total(action) - before.Total(action); n != 0 {
			t.Errorf("the rerun called %s %d times", action, n)
		}
	}
}

func TestRotation_DryRunChangesNothing(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(3, "web")
	p := policy("web")
	p.Publish.AdoptLaunchTemplates = []string{w.launchTemplate(ids[0])}
	p.DryRun = true

	res, sum := w.run(w.runner(), scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if !sum.DryRun || sum.Outcomes[steps.OutcomePlanned] != 3 || sum.ImagesCreated != 0 {
		t.Fatalf("summary %+v", sum)
	}
	for _, region := range regions {
		if got := w.images(region, "web"); len(got) != 0 {
			t.Errorf("%s: the dry run made images %v", region, got)
		}
	}
	st := w.sim.Stats()
	for _, action := range []string{"CreateImage", "CopyImage", "CreateTags", "DeleteTags", "DeregisterImage", "DeleteSnapshot",
		"CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "ssm:PutParameter", "EnableImageDeprecation", "ModifyImageAttribute"} {
		if n := st.Total(action); n != 0 {
			t.Errorf("the dry run called %s %d times", action, n)
		}
	}
	// What would happen is in each batch's final state, per instance.
	var planned int
	for _, raw := range res.DetailInputs["BatchReport"] {
		var b steps.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("BatchReport input %s: %v", raw, err)
		}
		for _, r := range b.Images {
			if r.State == rotation.StatePlanned {
				planned++
			}
		}
	}
	if planned < 3 {
		t.Errorf("%d planned images in the batch reports, want at least the 3 sources", planned)
	}
}

// TestRotation_ThousandInstancesStayUnderThePayloadLimit: 1,000 instances
// in batches of 100, copied into two more regions and published to SSM in
// each, rotated twice so the second rotation's retention reports 3,000
// deletions as well.
func TestRotation_ThousandInstancesStayUnderThePayloadLimit(t *testing.T) {
	const n = 1000
	w := newWorld(t, ec2sim.Options{ImageDelay: 200 * time.Millisecond, CopyDelay: 200 * time.Millisecond})
	ids := w.instances(n, "fleet")
	p := policy("fleet")
	p.BatchSize = 100
	p.Retention = rotation.Retention{Keep: 1}
	p.Publish = rotation.Publish{SSMParameter: "/amirotate/{policy}/{instanceId}/latest"}

	// Waits a little longer than an image takes: fewer, fuller polls.
	day1, day2 := t0.Add(-24*time.Hour), t0
	res, _ := w.run(w.runner(waits(250)), scheduled(p, day1))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	res, sum := w.run(w.runner(waits(250)), scheduled(p, day2))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Instances != n || sum.Outcomes[steps.OutcomeOK] != n || sum.CopiesCreated != 2*n || sum.ImagesDeleted != 3*n {
		t.Fatalf("summary %+v", sum)
	}
	if res.MapIterations != n/100 {
		t.Fatalf("%d Map iterations, want %d", res.MapIterations, n/100)
	}
	if res.MaxPayloadBytes >= payloadLimit {
		t.Fatalf("largest payload %d bytes (%s)", res.MaxPayloadBytes, res.MaxPayloadState)
	}
	perImage := float64(res.Transitions) / float64(3*n)
	t.Logf("%d transitions for %d images: %.3f per image; largest payload %d bytes in %s; lambda max request %d bytes",
		res.Transitions, 3*n, perImage, res.MaxPayloadBytes, res.MaxPayloadState, res.Lambda.MaxRequestBytes)
	if perImage > 1 {
		t.Errorf("%.2f state transitions per image, want at most 1", perImage)
	}
	w.expectImages("fleet", ids[:5], day2.Format(rot0Layout))
}
