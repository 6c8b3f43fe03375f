package iamsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// The scenario every statement of the local template must be proven by:
// policy "audit" of deploy.json with everything switched on (copies into two
// regions, deprecation, sharing, SSM and launch-template publishing,
// retention), rotated through the real state machine three times: day 1
// makes everything new; on day 2 an instance has left the selector (the pass
// over other instances) and another's new image fails (poll cleans it up),
// and retention deletes; day 3 is a dry run. Every other policy of
// deploy.json (each has its own instance selector) rotates one instance once.
const auditPolicy = `{"name":"audit","retention":{"keep":1},"copyInstanceTags":["Name"],"tags":{"Environment":"audit"},` +
	`"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2"}],"deprecateAfterDays":7,"shareWith":["111122223333"],` +
	`"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest","launchTemplates":true},"roll":{"instanceWarmupSeconds":0},` +
	`"verify":{"subnetId":"subnet-0a1b2c3d4e5f60718","securityGroupIds":["sg-0a1b2c3d4e5f60718"],"instanceProfile":"amirotate-verify",` +
	`"probe":{"document":"AmirotateProbe","parameters":{"commands":["systemctl is-system-running --wait"]}}},"batchSize":2,` +
	`"pollIntervalSeconds":60,"timeoutMinutes":30}`

// scenarioRegions: every region deploy.json copies to.
var scenarioRegions = []string{iamsim.LocalRegion, "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1"}

// scenarioResult is what one run of the scenario saw.
type scenarioResult struct {
	requests []iamsim.Request
	denials  []ec2sim.Denial
	failed   []string // executions that did not succeed, but the one with the injected failure
}

// scenarioWorld is a simulator enforcing roles, recording every request,
// and a runner of the real state machine whose steps call as their roles.
type scenarioWorld struct {
	sim     *ec2sim.Sim
	enf     *iamsim.Enforcer
	clients *ec2x.Clients
	runner  *localrun.Runner
}

func newScenarioWorld(t *testing.T, roles iamsim.Roles) *scenarioWorld {
	t.Helper()
	ev, err := iamsim.SharedEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	enf, err := iamsim.NewEnforcer(ev, roles)
	if err != nil {
		t.Fatal(err)
	}
	enf.Record = true
	sim := ec2sim.New(ec2sim.Options{Regions: scenarioRegions, ImageDelay: 100 * time.Millisecond, CopyDelay: 100 * time.Millisecond,
		RefreshDelay: 100 * time.Millisecond, Seed: 7})
	sim.SetAuthorizer(enf)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       iamsim.LocalRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSEED", "local", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	fast := retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	clients := ec2x.NewClients(cfg, ec2x.WithBackoff(fast), ec2x.WithoutPacing(), ec2x.WithLocalIdentities())
	waitMs, retryMs := 150, 20
	runner, err := localrun.New(localrun.Options{Handlers: localrun.StepHandlers(clients, steps.Env{}), WaitMs: &waitMs, RetryMs: &retryMs,
		DetailStates: []string{"BatchReport", "Report", "Publish"}})
	if err != nil {
		t.Fatal(err)
	}
	return &scenarioWorld{sim: sim, enf: enf, clients: clients, runner: runner}
}

// rotate runs one rotation of policy (JSON) scheduled at day.
func (w *scenarioWorld) rotate(t *testing.T, policy string, day time.Time) *localrun.Result {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"policy": json.RawMessage(policy), "trigger": "schedule", "scheduledTime": day.Format(time.RFC3339)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := w.runner.Run(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// day1 is the scenario's first rotation time: a rotation may not lie in
// the future.
func day1() time.Time {
	return time.Now().UTC().Truncate(24 * time.Hour).Add(-72*time.Hour + 3*time.Hour)
}

// runScenario runs the scenario against a simulator enforcing roles.
func runScenario(t *testing.T, roles iamsim.Roles) scenarioResult {
	t.Helper()
	w := newScenarioWorld(t, roles)
	ctx := context.Background()
	home := iamsim.LocalRegion
	var ids []string
	for range 4 {
		id, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "audit", "Name": "web"}, Volumes: []int{8, 20}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	seed := w.clients.EC2(home) // the seeding identity has no role: allowed
	others := deployPolicies(t)
	for _, name := range sortedKeys(others) {
		if _, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: name}}); err != nil {
			t.Fatal(err)
		}
	}
	var res scenarioResult
	rotate := func(p string, day time.Time, dryRun, injectedFailure bool) {
		if dryRun {
			p = strings.Replace(p, `"batchSize"`, `"dryRun":true,"batchSize"`, 1)
		}
		out := w.rotate(t, p, day)
		// The injected failure fails that instance's rotation, and so the
		// execution, truthfully.
		if injectedFailure && out.Status == localrun.StatusFailed && strings.Contains(out.Cause, "(1 failed)") {
			return
		}
		if !out.Succeeded() || injectedFailure {
			res.failed = append(res.failed, day.Format(time.RFC3339)+": "+out.Error+": "+out.Cause)
		}
	}
	start := day1()
	for _, name := range sortedKeys(others) {
		rotate(string(others[name].(json.RawMessage)), start, false, false)
	}
	// Day 1: every new image is booted and probed; the first probe fails,
	// so one image is rejected (marked, never published).
	// The probe is the account's own document: IAM names an Amazon-owned
	// document by an ARN without account, which the IAM reference's
	// document resource type does not take.
	if err := w.sim.AddDocument(home, ec2sim.Document{Name: "AmirotateProbe", Parameters: []ec2sim.DocumentParameter{{Name: "commands"}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.sim.ScriptCommands(ec2sim.CommandScript{Document: "AmirotateProbe", Outcome: ec2sim.ScriptFail, ExitCode: 1, Count: 1}); err != nil {
		t.Fatal(err)
	}
	rotate(auditPolicy, start, false, true)
	// A launch template that launches instance 0's first image: publish
	// moves a template only from an image of the same lineage.
	first, err := seed.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []types.Filter{{Name: aws.String("tag:" + rotation.TagInstanceID), Values: []string{ids[0]}}}})
	if err != nil || len(first.Images) != 1 {
		t.Fatalf("instance %s's first image: %v %v", ids[0], first, err)
	}
	lt, err := seed.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("audit-web"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: first.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate,
			Tags: []types.Tag{{Key: aws.String(rotation.TagTrack), Value: aws.String(ids[0])}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The group on that template, which the roll step refreshes.
	if _, err := w.clients.AutoScaling(home).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("audit-web"), MinSize: aws.Int32(0), MaxSize: aws.Int32(4), DesiredCapacity: aws.Int32(2),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("1")},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{ids[3]}, Tags: []types.Tag{{Key: aws.String(rotation.TagPolicy)}}}); err != nil {
		t.Fatal(err)
	}
	// Instance 0's first images stay (amirotate:keep), for the rollback
	// below to go back to.
	for _, region := range []string{home, "eu-west-1", "ap-southeast-2"} {
		cl := w.clients.EC2(region)
		imgs, err := cl.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
			Filters: []types.Filter{{Name: aws.String("tag:" + rotation.TagInstanceID), Values: []string{ids[0]}}}})
		if err != nil || len(imgs.Images) != 1 {
			t.Fatalf("instance %s's first image in %s: %v %v", ids[0], region, imgs, err)
		}
		if _, err := cl.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(imgs.Images[0].ImageId)},
			Tags: []types.Tag{{Key: aws.String(rotation.TagKeep), Value: aws.String("rollback")}}}); err != nil {
			t.Fatal(err)
		}
	}
	w.sim.FailNextImage(home, ids[1], "scenario: injected failure")
	rotate(auditPolicy, start.Add(24*time.Hour), false, true)
	// The audit policy shares its images, so its retention retires them over
	// days (usage reports, grace period) rather than deleting; a policy that
	// shares nothing deletes its expired images the next day.
	rotate(string(others["fleet"].(json.RawMessage)), start.Add(24*time.Hour), false, false)
	// Day 3: the day-before images are expired and shared, so retention
	// asks EC2 for their usage reports (whichever instance's day-1 image
	// was rejected); then a dry run of the same day.
	rotate(auditPolicy, start.Add(48*time.Hour), false, false)
	rotate(auditPolicy, start.Add(49*time.Hour), true, false)
	// amirotate rollback of instance 0 to its first images, as the publish
	// role: marks, parameter, launch template and latest; then --clear.
	policy, err := rotation.DecodePolicy([]byte(auditPolicy))
	if err != nil {
		t.Fatal(err)
	}
	rb := steps.NewRollback(w.clients.As(ec2x.StepPublish), steps.Env{})
	for _, clear := range []bool{false, true} {
		out, err := rb.Handle(ctx, steps.RollbackIn{Policy: policy, InstanceID: ids[0], Clear: clear})
		if err != nil || out.Failed || !out.Changed {
			res.failed = append(res.failed, fmt.Sprintf("rollback (clear %v): %v %+v", clear, err, out))
		}
	}
	res.requests, res.denials = w.enf.Requests(), w.enf.Denials()
	return res
}

// deployPolicies are the policies of deploy.json but audit, by name.
func deployPolicies(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("deploy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dep struct {
		Policies []struct {
			Policy json.RawMessage `json:"policy"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(data, &dep); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for _, p := range dep.Policies {
		var named struct{ Name string }
		if err := json.Unmarshal(p.Policy, &named); err != nil {
			t.Fatal(err)
		}
		if named.Name != "audit" {
			out[named.Name] = p.Policy
		}
	}
	return out
}

var base struct {
	once  sync.Once
	roles iamsim.Roles
	res   scenarioResult
}

// baseline runs the scenario once per test binary with the untouched
// template.
func baseline(t *testing.T) (iamsim.Roles, scenarioResult) {
	t.Helper()
	base.once.Do(func() {
		roles, err := iamsim.ParseTemplate(iamsim.LocalTemplate, ec2sim.AccountID, iamsim.LocalRegion)
		if err != nil {
			t.Fatal(err)
		}
		base.roles, base.res = roles, runScenario(t, roles)
	})
	if base.roles == nil {
		t.Fatal("the baseline scenario did not run")
	}
	return base.roles, base.res
}

// TestEnforcement_UntouchedTemplatePasses: the scenario succeeds with every
// call authorized.
func TestEnforcement_UntouchedTemplatePasses(t *testing.T) {
	_, res := baseline(t)
	for _, d := range res.denials {
		t.Errorf("denied: %s %s on %s (%s) %v", d.Session, d.Request.Action, d.Request.Resource, d.Request.Because, d.Request.Context)
	}
	for _, f := range res.failed {
		t.Errorf("execution failed: %s", f)
	}
	steps := map[string]int{}
	for _, r := range res.requests {
		steps[r.Step]++
	}
	t.Logf("%d requests authorized: %v", len(res.requests), steps)
}

// failValidation denies what Parameter Store checks after the call (an
// aws:ec2:image value's image), whatever the role: its checks succeed or
// fail alike whether the role lacks ec2:DescribeImages or the image is
// gone.
type failValidation struct{ *iamsim.Enforcer }

func (f failValidation) Authorize(ctx context.Context, key string, reqs []ec2sim.AuthzRequest) (*ec2sim.Denial, error) {
	if len(reqs) == 1 && reqs[0].Deferred {
		return &ec2sim.Denial{Request: reqs[0], Principal: key, Session: key}, nil
	}
	return f.Enforcer.Authorize(ctx, key, reqs)
}

// TestPublish_ReportsAParameterThatDidNotTakeTheImage: when Parameter
// Store's later validation fails, the write succeeded and the parameter
// keeps its old value; publish reads the parameter back and reports it in
// the publication, instead of leaving consumers on the old image unnoticed.
func TestPublish_ReportsAParameterThatDidNotTakeTheImage(t *testing.T) {
	roles, err := iamsim.ParseTemplate(iamsim.LocalTemplate, ec2sim.AccountID, iamsim.LocalRegion)
	if err != nil {
		t.Fatal(err)
	}
	w := newScenarioWorld(t, roles)
	w.sim.SetAuthorizer(failValidation{w.enf})
	if _, err := w.sim.RunInstance(iamsim.LocalRegion, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "db"}}); err != nil {
		t.Fatal(err)
	}
	out := w.rotate(t, string(deployPolicies(t)["db"].(json.RawMessage)), day1())
	var said bool
	for _, o := range out.DetailOutputs["Publish"] {
		said = said || strings.Contains(string(o), "did not take")
	}
	if !said {
		t.Errorf("no publication reports the parameter: %s %s", out.Error, out.Cause)
	}
	if err := w.enf.DenialsError(); err != nil {
		t.Errorf("the role itself was denied: %v", err)
	}
}
