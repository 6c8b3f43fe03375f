package steps

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// TestPermissions_HandlersCallOnlyTheActionsTheirRoleGrants closes the loop
// the IAM derivation leaves open. infra grants each function exactly
// ec2x.Actions(step), derived from the step's narrow interfaces, but most
// handlers hold a full *ec2.Client, so the compiler does not stop them from
// calling something outside those interfaces (AccessDenied in AWS, unnoticed
// here). This test runs every step for real against the simulator, two
// rotations a day apart with everything switched on (copies into two
// regions, deprecation, sharing, SSM and launch-template publishing, a failed
// image that poll cleans up, retention deleting, the pass over instances that
// left the selector, and a dry run), and checks that every call the
// simulator saw during a step is among the actions granted to that step.
func TestPermissions_HandlersCallOnlyTheActionsTheirRoleGrants(t *testing.T) {
	const home = "us-east-1"
	regions := []string{home, "eu-west-1", "ap-southeast-2"}
	start := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	clock := ec2sim.NewManualClock(start)
	sim := ec2sim.New(ec2sim.Options{Regions: regions, Clock: clock, ImageDelay: time.Minute, CopyDelay: 2 * time.Minute, Seed: 5})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       home,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDAUDIT", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	clients := ec2x.NewClients(cfg, ec2x.WithoutPacing())
	ctx := context.Background()

	var ids []string
	for range 4 {
		id, err := sim.RunInstance(home, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "audit", "Name": "web"}, Volumes: []int{8, 20}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	homeEC2 := clients.EC2(home)
	lt, err := homeEC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("audit-web"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(ec2sim.BaseImageID(home)), InstanceType: types.InstanceTypeT3Micro},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate,
			Tags: []types.Tag{{Key: aws.String(rotation.TagTrack), Value: aws.String(ids[0])}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The template launches the base image, not one of amirotate's: the
	// policy adopts it explicitly.
	adopt := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)

	policy := `{"name":"audit","retention":{"keep":1},"copyInstanceTags":["Name"],"tags":{"Environment":"audit"},` +
		`"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2"}],"deprecateAfterDays":7,"shareWith":["111122223333"],"shareGraceDays":3,` +
		`"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest","launchTemplates":true,"adoptLaunchTemplates":["` + adopt + `"]},` +
		`"batchSize":2,"pollIntervalSeconds":60}`

	observed := map[string]map[string]bool{}
	// measure runs one step and checks what it called against its grant.
	measure := func(step string, run func() error) {
		t.Helper()
		sim.ResetStats()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		granted := ec2x.Actions(step)
		if observed[step] == nil {
			observed[step] = map[string]bool{}
		}
		for region, actions := range sim.Stats().Calls {
			for action, n := range actions {
				if n == 0 {
					continue
				}
				iam := action
				if !strings.Contains(action, ":") {
					iam = "ec2:" + action
				}
				observed[step][iam] = true
				if !slices.Contains(granted, iam) {
					t.Errorf("step %s called %s in %s (%d times), which its role does not grant (granted: %v)", step, iam, region, n, granted)
				}
			}
		}
	}

	rotate := func(day time.Time, dryRun bool) {
		t.Helper()
		p := policy
		if dryRun {
			p = strings.Replace(p, `"batchSize"`, `"dryRun":true,"batchSize"`, 1)
		}
		raw, _ := json.Marshal(map[string]any{"policy": json.RawMessage(p), "trigger": "schedule", "scheduledTime": day.Format(time.RFC3339)})
		var d DiscoverOut
		measure(ec2x.StepDiscover, func() (err error) {
			d, err = NewDiscover(clients, Env{Now: clock.Now}).Handle(ctx, DiscoverIn{Input: raw, StartTime: day})
			return err
		})
		if len(d.Targets) == 0 {
			t.Fatalf("discover found no targets: %+v", d)
		}
		for _, item := range d.Batches {
			b := Batch{Policy: d.Policy, Rotation: d.Rotation, InstanceIDs: item.InstanceIDs}
			step := func(name string, h func(context.Context, Batch) (Batch, error)) {
				t.Helper()
				measure(name, func() (err error) {
					b, err = h(ctx, b)
					return err
				})
			}
			step(ec2x.StepSnapshot, NewSnapshot(clients, Env{Now: clock.Now}).Handle)
			for round := 0; ; round++ {
				if round > 40 {
					t.Fatalf("batch did not settle: %+v", b.Counts)
				}
				clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
				step(ec2x.StepPoll, NewPoll(clients, Env{Now: clock.Now}).Handle)
				if b.ToCopy > 0 {
					step(ec2x.StepCopy, NewCopy(clients, Env{Now: clock.Now}).Handle)
					continue
				}
				if b.Pending == 0 {
					break
				}
			}
			step(ec2x.StepTag, NewTag(clients, Env{Now: clock.Now}).Handle)
			step(ec2x.StepPublish, NewPublish(clients, Env{Now: clock.Now}).Handle)
			step(ec2x.StepRetention, NewRetention(clients, Env{Now: clock.Now}).Handle)
		}
		if d.RetainOthers {
			measure(ec2x.StepRetention, func() error {
				_, err := NewRetention(clients, Env{Now: clock.Now}).HandleOthers(ctx, RetentionOthersIn{Policy: d.Policy, Rotation: d.Rotation, Exclude: d.Targets})
				return err
			})
		}
	}

	// Day 1: everything new.
	rotate(start, false)
	// Day 2: instance 3 left the selector (its images are for the pass over
	// other instances), instance 1's new image fails (poll cleans it up).
	if _, err := homeEC2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{ids[3]}, Tags: []types.Tag{{Key: aws.String(rotation.TagPolicy)}}}); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(24 * time.Hour))
	sim.FailNextImage(home, ids[1], "audit: injected failure")
	rotate(start.Add(24*time.Hour), false)
	// Day 3: a dry run over what is there.
	clock.Set(start.Add(48 * time.Hour))
	rotate(start.Add(48*time.Hour), true)
	// Days 4, 8 and 9: the shared images of day 1 are retired: a usage
	// report (requested on day 2) shows no use, so sharing stops and they are
	// deprecated; once the grace period is over a new report is requested,
	// and the next day it lets retention delete them.
	for _, day := range []int{3, 7, 8} {
		clock.Set(start.Add(time.Duration(day) * 24 * time.Hour))
		rotate(start.Add(time.Duration(day)*24*time.Hour), false)
	}

	// The run must have exercised the mutating calls, or the check above
	// proves little.
	for step, want := range map[string][]string{
		ec2x.StepSnapshot: {"ec2:CreateImage"},
		ec2x.StepPoll:     {"ec2:DescribeImages", "ec2:DeregisterImage"},
		ec2x.StepCopy:     {"ec2:CopyImage"},
		ec2x.StepTag:      {"ec2:CreateTags", "ec2:DeleteTags", "ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"},
		ec2x.StepPublish:  {"ssm:PutParameter", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"},
		ec2x.StepRetention: {"ec2:DescribeImageReferences", "ec2:DeregisterImage", "ec2:DescribeImageAttribute", "ec2:DescribeImageUsageReports",
			"ec2:DescribeImageUsageReportEntries", "ec2:CreateImageUsageReport", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "ec2:EnableImageDeprecation"},
	} {
		for _, a := range want {
			if !observed[step][a] {
				t.Errorf("step %s never called %s; the scenario does not exercise it", step, a)
			}
		}
	}
	for _, step := range []string{ec2x.StepDiscover, ec2x.StepSnapshot, ec2x.StepPoll, ec2x.StepCopy, ec2x.StepTag, ec2x.StepPublish, ec2x.StepRetention} {
		var unused []string
		for _, a := range ec2x.Actions(step) {
			if !observed[step][a] {
				unused = append(unused, a)
			}
		}
		var seen []string
		for a := range observed[step] {
			seen = append(seen, a)
		}
		sort.Strings(seen)
		t.Logf("%s: called %v; granted but not called here %v", step, seen, unused)
	}
}
