package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// TestRoll_GroupsFollowTheNewImageThroughTheStateMachine: three instances,
// each with a tracked launch template and an Auto Scaling group on version
// 1 of it. On the second rotation publish moves each template to version 2
// and the roll states refresh the groups: the first group's refresh
// succeeds (the group launches version 2), the second's rolls back (an
// alarm, scripted) and fails its instance with the reason, the third group
// is already running someone else's refresh, which is left alone and
// reported.
func TestRoll_GroupsFollowTheNewImageThroughTheStateMachine(t *testing.T) {
	w := newWorld(t, ec2sim.Options{RefreshDelay: 50 * time.Millisecond})
	ctx := context.Background()
	ids := w.instances(3, "fleet")
	p := policy("fleet")
	p.CopyTo = nil
	zero := 0
	p.Roll = &rotation.Roll{InstanceWarmupSeconds: &zero, AutoRollback: true, Alarms: []string{"fleet-5xx"}}
	day1 := time.Now().UTC().Truncate(time.Minute).Add(-48 * time.Hour)
	if res, sum := w.run(w.runner(), scheduled(p, day1)); !res.Succeeded() {
		t.Fatalf("day 1: %s %s %+v", res.Error, res.Cause, sum.Problems)
	}
	first := w.images(home, "fleet")
	asg := w.clients.AutoScaling(home)
	templates := map[string]string{}
	for i, id := range ids {
		lt, err := w.clients.EC2(home).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String("fleet-" + id),
			LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: first[id][0].ImageId, InstanceType: types.InstanceTypeT3Micro},
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate,
				Tags: []types.Tag{{Key: aws.String(rotation.TagTrack), Value: aws.String(id)}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		templates[id] = aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
		if _, err := asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String(groupName(i)), MinSize: aws.Int32(0), MaxSize: aws.Int32(8), DesiredCapacity: aws.Int32(4),
			LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("1")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.sim.FailNextInstanceRefresh(home, groupName(1), 50, "alarm fleet-5xx went into ALARM"); err != nil {
		t.Fatal(err)
	}
	running, err := asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String(groupName(2)),
		Preferences: &astypes.RefreshPreferences{InstanceWarmup: aws.Int32(3600)}})
	if err != nil {
		t.Fatal(err)
	}
	w.sim.ResetStats()

	res, sum := w.run(w.runner(), scheduled(p, day1.Add(24*time.Hour)))

	if res.Succeeded() || sum.Outcomes[steps.OutcomeOK] != 1 || sum.Outcomes[steps.OutcomeError] != 2 || sum.GroupsRolled != 1 {
		t.Fatalf("execution %s; summary %+v", res.Status, sum)
	}
	reasons := map[string]string{}
	for _, pr := range sum.Problems {
		reasons[pr.InstanceID] = pr.Reason
	}
	if why := reasons[ids[1]]; !strings.Contains(why, "RollbackSuccessful") || !strings.Contains(why, "alarm fleet-5xx went into ALARM") {
		t.Errorf("the rolled-back instance's reason: %q", why)
	}
	if why := reasons[ids[2]]; !strings.Contains(why, "left alone") || !strings.Contains(why, aws.ToString(running.InstanceRefreshId)) {
		t.Errorf("the busy group's instance's reason: %q", why)
	}
	for i, want := range []string{"2", "1"} {
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{groupName(i)}})
		if err != nil || aws.ToString(out.AutoScalingGroups[0].LaunchTemplate.Version) != want {
			t.Errorf("group %s launches version %v; want %s (%v)", groupName(i), out, want, err)
		}
	}
	irs, err := asg.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{AutoScalingGroupName: aws.String(groupName(2))})
	if err != nil || len(irs.InstanceRefreshes) != 1 || irs.InstanceRefreshes[0].Status != astypes.InstanceRefreshStatusInProgress {
		t.Errorf("the refresh that was running: %+v %v; want it untouched", irs, err)
	}
	calls := w.sim.Stats().FirstAttempts().Calls[home]
	if calls["autoscaling:CancelInstanceRefresh"] != 0 || calls["autoscaling:StartInstanceRefresh"] != 2 {
		t.Errorf("calls %v; want two refreshes started and none cancelled", calls)
	}
	if res.StatesEntered["WaitRoll"] == 0 {
		t.Errorf("the state machine never waited for a refresh: %v", res.StatesEntered)
	}
}

func groupName(i int) string { return "fleet-group-" + string(rune('a'+i)) }
