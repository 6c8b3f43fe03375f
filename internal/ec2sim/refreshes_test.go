package ec2sim

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// refreshGroup makes a launch template with two versions and a group of
// capacity instances that launches version groupVersion of it.
func refreshGroup(t *testing.T, e *env, name, groupVersion string, capacity int32) string {
	t.Helper()
	ctx := context.Background()
	img := BaseImageID("us-east-1")
	lt, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name + "-lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(img)}})
	if err != nil {
		t.Fatal(err)
	}
	id := *lt.LaunchTemplate.LaunchTemplateId
	if _, err := e.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: aws.String(id),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(img), InstanceType: ec2types.InstanceTypeT3Small}}); err != nil {
		t.Fatal(err)
	}
	spec := &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(id)}
	if groupVersion != "" {
		spec.Version = aws.String(groupVersion)
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String(name),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(capacity * 2), DesiredCapacity: aws.Int32(capacity), LaunchTemplate: spec}); err != nil {
		t.Fatal(err)
	}
	return id
}

func describeRefresh(t *testing.T, e *env, group, id string) astypes.InstanceRefresh {
	t.Helper()
	out, err := e.asg.DescribeInstanceRefreshes(context.Background(), &autoscaling.DescribeInstanceRefreshesInput{
		AutoScalingGroupName: aws.String(group), InstanceRefreshIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.InstanceRefreshes) != 1 {
		t.Fatalf("refreshes = %+v", out.InstanceRefreshes)
	}
	return out.InstanceRefreshes[0]
}

func groupVersion(t *testing.T, e *env, group string) string {
	t.Helper()
	out, err := e.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Fatalf("group %s: %+v %v", group, out, err)
	}
	return aws.ToString(out.AutoScalingGroups[0].LaunchTemplate.Version)
}

func TestInstanceRefresh_ProgressesOnTheClockAndUpdatesTheGroupOnSuccess(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	lt := refreshGroup(t, e, "web", "1", 10)
	out, err := e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String("web"),
		DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}},
		Preferences: &astypes.RefreshPreferences{MinHealthyPercentage: aws.Int32(50), InstanceWarmup: aws.Int32(60), SkipMatching: aws.Bool(true),
			CheckpointPercentages: []int32{50, 100}, CheckpointDelay: aws.Int32(600), BakeTime: aws.Int32(120),
			AutoRollback: aws.Bool(true), AlarmSpecification: &astypes.AlarmSpecification{Alarms: []string{"web-5xx"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.InstanceRefreshId)
	// Timeline: Pending 30s; rounds of 5 instances, 60s each; 600s at the 50% checkpoint; baking 120s.
	for _, want := range []struct {
		after   time.Duration
		status  astypes.InstanceRefreshStatus
		percent int32
		version string
	}{
		{0, astypes.InstanceRefreshStatusPending, 0, "1"},
		{30 * time.Second, astypes.InstanceRefreshStatusInProgress, 0, "1"},
		{60 * time.Second, astypes.InstanceRefreshStatusInProgress, 50, "1"},  // 90s: first round done, checkpoint pause
		{600 * time.Second, astypes.InstanceRefreshStatusInProgress, 50, "1"}, // 690s: still paused
		{60 * time.Second, astypes.InstanceRefreshStatusBaking, 100, "1"},     // 750s: second round done
		{120 * time.Second, astypes.InstanceRefreshStatusSuccessful, 100, "2"},
	} {
		e.clock.Advance(want.after)
		got := describeRefresh(t, e, "web", id)
		if got.Status != want.status || aws.ToInt32(got.PercentageComplete) != want.percent {
			t.Fatalf("at %v: status %s %d%%, want %s %d%%", e.clock.Now().Sub(testStart), got.Status, aws.ToInt32(got.PercentageComplete), want.status, want.percent)
		}
		if v := groupVersion(t, e, "web"); v != want.version {
			t.Fatalf("at %v (%s): group launches version %s, want %s", e.clock.Now().Sub(testStart), got.Status, v, want.version)
		}
	}
	got := describeRefresh(t, e, "web", id)
	p := got.Preferences
	if got.EndTime == nil || aws.ToString(got.DesiredConfiguration.LaunchTemplate.Version) != "2" || !aws.ToBool(p.AutoRollback) || !aws.ToBool(p.SkipMatching) ||
		aws.ToInt32(p.MinHealthyPercentage) != 50 || len(p.CheckpointPercentages) != 2 || p.AlarmSpecification == nil || p.AlarmSpecification.Alarms[0] != "web-5xx" {
		t.Fatalf("refresh = %+v, preferences %+v", got, p)
	}
	// Finished: a new refresh may start; SkipMatching with nothing to replace succeeds at once.
	out, err = e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web"),
		DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}},
		Preferences:          &astypes.RefreshPreferences{SkipMatching: aws.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second)
	if got := describeRefresh(t, e, "web", *out.InstanceRefreshId); got.Status != astypes.InstanceRefreshStatusSuccessful || aws.ToInt32(got.InstancesToUpdate) != 0 {
		t.Fatalf("matching refresh = %s, %d to update", got.Status, aws.ToInt32(got.InstancesToUpdate))
	}
	all, err := e.asg.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{AutoScalingGroupName: aws.String("web")})
	if err != nil || len(all.InstanceRefreshes) != 2 || *all.InstanceRefreshes[0].InstanceRefreshId != *out.InstanceRefreshId {
		t.Fatalf("describe all (newest first): %+v %v", all, err)
	}
}

func TestInstanceRefresh_OneActiveRefreshPerGroup(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	refreshGroup(t, e, "web", "1", 4)
	start := func() (*autoscaling.StartInstanceRefreshOutput, error) {
		return e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web")})
	}
	first, err := start()
	if err != nil {
		t.Fatal(err)
	}
	_, err = start()
	wantCode(t, err, "InstanceRefreshInProgress", 400)
	e.clock.Advance(time.Minute)
	_, err = start()
	wantCode(t, err, "InstanceRefreshInProgress", 400)

	c, err := e.asg.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String("web")})
	if err != nil || *c.InstanceRefreshId != *first.InstanceRefreshId {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if got := describeRefresh(t, e, "web", *first.InstanceRefreshId); got.Status != astypes.InstanceRefreshStatusCancelling {
		t.Fatalf("after cancel: %s", got.Status)
	}
	_, err = start()
	wantCode(t, err, "InstanceRefreshInProgress", 400) // still cancelling
	_, err = e.asg.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String("web")})
	wantCode(t, err, "ActiveInstanceRefreshNotFound", 400)
	e.clock.Advance(refreshCancelTime)
	if got := describeRefresh(t, e, "web", *first.InstanceRefreshId); got.Status != astypes.InstanceRefreshStatusCancelled || got.EndTime == nil {
		t.Fatalf("after cancelling: %+v", got)
	}
	if _, err := start(); err != nil {
		t.Fatalf("start after cancel: %v", err)
	}
	_, err = e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("nope")})
	wantCode(t, err, "ValidationError", 400)
}

func TestInstanceRefresh_AutoRollbackNeedsNumberedVersions(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	rollback := &astypes.RefreshPreferences{AutoRollback: aws.Bool(true)}
	for _, c := range []struct {
		name, groupVersion, desired string
		noDesired                   bool
	}{
		{name: "group-default", groupVersion: "$Default", desired: "2"},
		{name: "group-unversioned", groupVersion: "", desired: "2"},
		{name: "group-latest", groupVersion: "$Latest", desired: "2"},
		{name: "desired-latest", groupVersion: "1", desired: "$Latest"},
		{name: "no-desired", groupVersion: "1", noDesired: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			lt := refreshGroup(t, e, c.name, c.groupVersion, 2)
			in := &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String(c.name), Preferences: rollback}
			if !c.noDesired {
				in.DesiredConfiguration = &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String(c.desired)}}
			}
			_, err := e.asg.StartInstanceRefresh(ctx, in)
			wantCode(t, err, "ValidationError", 400)
		})
	}
	lt := refreshGroup(t, e, "numbered", "1", 2)
	_, err := e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("numbered"),
		DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}},
		Preferences:          &astypes.RefreshPreferences{AlarmSpecification: &astypes.AlarmSpecification{Alarms: []string{"a"}}}})
	wantCode(t, err, "ValidationError", 400) // alarms only with AutoRollback
	for _, bad := range []*astypes.RefreshPreferences{
		{MinHealthyPercentage: aws.Int32(101)},
		{CheckpointPercentages: []int32{50, 20}},
		{CheckpointDelay: aws.Int32(60)},
	} {
		_, err := e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("numbered"), Preferences: bad})
		wantCode(t, err, "ValidationError", 400)
	}
	if _, err := e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("numbered"), Preferences: rollback,
		DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}}}); err != nil {
		t.Fatalf("numbered versions: %v", err)
	}
}

func TestInstanceRefresh_ScriptedFailure(t *testing.T) {
	for _, c := range []struct {
		name           string
		autoRollback   bool
		rollbackFails  bool
		final, passing astypes.InstanceRefreshStatus
	}{
		{"failed", false, false, astypes.InstanceRefreshStatusFailed, ""},
		{"rolled-back", true, false, astypes.InstanceRefreshStatusRollbackSuccessful, astypes.InstanceRefreshStatusRollbackInProgress},
		{"rollback-failed", true, true, astypes.InstanceRefreshStatusRollbackFailed, astypes.InstanceRefreshStatusRollbackInProgress},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			ctx := context.Background()
			lt := refreshGroup(t, e, "web", "1", 4)
			fail := e.sim.FailNextInstanceRefresh
			if c.rollbackFails {
				fail = e.sim.FailNextInstanceRefreshRollback
			}
			if err := fail("us-east-1", "web", 50, "new instances failed their EC2 health checks"); err != nil {
				t.Fatal(err)
			}
			out, err := e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web"),
				DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}},
				Preferences:          &astypes.RefreshPreferences{AutoRollback: aws.Bool(c.autoRollback), MinHealthyPercentage: aws.Int32(75), InstanceWarmup: aws.Int32(60)}})
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(30*time.Second + 60*time.Second) // one round: 25%
			if got := describeRefresh(t, e, "web", *out.InstanceRefreshId); got.Status != astypes.InstanceRefreshStatusInProgress || *got.PercentageComplete != 25 {
				t.Fatalf("after one round: %s %d%%", got.Status, *got.PercentageComplete)
			}
			e.clock.Advance(60 * time.Second) // 50%: fails
			got := describeRefresh(t, e, "web", *out.InstanceRefreshId)
			if c.passing != "" {
				if got.Status != c.passing {
					t.Fatalf("at the failure: %s, want %s", got.Status, c.passing)
				}
				e.clock.Advance(10 * time.Minute)
				got = describeRefresh(t, e, "web", *out.InstanceRefreshId)
			}
			if got.Status != c.final || got.EndTime == nil || got.StatusReason == nil {
				t.Fatalf("final: %+v, want %s", got, c.final)
			}
			if v := groupVersion(t, e, "web"); v != "1" {
				t.Fatalf("group launches %s after a failed refresh, want 1", v)
			}
			// The script is used up: the next refresh succeeds.
			out, err = e.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web"),
				DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(lt), Version: aws.String("2")}}})
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour)
			if got := describeRefresh(t, e, "web", *out.InstanceRefreshId); got.Status != astypes.InstanceRefreshStatusSuccessful {
				t.Fatalf("next refresh: %s", got.Status)
			}
		})
	}
}
