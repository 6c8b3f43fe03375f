package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// TestVerify_OnlyVerifiedImagesArePublishedThroughTheStateMachine: two
// instances rotate twice with a verify block (the subnet, group, profile
// and probe document the deployment's roles allow). On the second rotation
// the probe fails on one test instance: that image is rejected, not
// published, the previous image stays in its launch template and
// parameter, the execution fails naming it; the other is verified and
// published. No test instance is left running.
func TestVerify_OnlyVerifiedImagesArePublishedThroughTheStateMachine(t *testing.T) {
	w := newWorld(t, ec2sim.Options{StatusCheckDelay: 50 * time.Millisecond, CommandDelay: 50 * time.Millisecond, InvocationDelay: 20 * time.Millisecond})
	ctx := context.Background()
	if err := w.sim.AddDocument(home, ec2sim.Document{Name: "AmirotateProbe", Parameters: []ec2sim.DocumentParameter{{Name: "commands"}}}); err != nil {
		t.Fatal(err)
	}
	ids := w.instances(2, "audit")
	p := policy("audit")
	p.CopyTo = []rotation.CopyTarget{{Region: "eu-west-1"}}
	p.Verify = &rotation.Verify{SubnetID: "subnet-0a1b2c3d4e5f60718", SecurityGroupIDs: []string{"sg-0a1b2c3d4e5f60718"},
		InstanceProfile: "amirotate-verify", Probe: &rotation.Probe{Document: "AmirotateProbe", Parameters: map[string][]string{"commands": {"true"}}}}
	day1 := time.Now().UTC().Truncate(time.Minute).Add(-48 * time.Hour)
	if res, sum := w.run(w.runner(), scheduled(p, day1)); !res.Succeeded() {
		t.Fatalf("day 1: %s %s %+v", res.Error, res.Cause, sum.Problems)
	}
	param := "/amirotate/audit/" + ids[0] + "/latest"
	before, _ := w.ssmValue(home, param)
	if err := w.sim.ScriptCommands(ec2sim.CommandScript{Document: "AmirotateProbe", Outcome: ec2sim.ScriptFail, ExitCode: 7, Count: 1}); err != nil {
		t.Fatal(err)
	}
	res, sum := w.run(w.runner(), scheduled(p, day1.Add(24*time.Hour)))
	if res.Succeeded() || sum.Outcomes[steps.OutcomeFailed] != 1 || sum.Outcomes[steps.OutcomeOK] != 1 {
		t.Fatalf("execution %s; summary %+v", res.Status, sum)
	}
	var rejected string
	for _, pr := range sum.Problems {
		if strings.Contains(pr.Reason, "failed verification") && strings.Contains(pr.Reason, "exit code 7") {
			rejected = pr.InstanceID
		}
	}
	if rejected == "" {
		t.Fatalf("no problem names the failed probe: %+v", sum.Problems)
	}
	for _, id := range ids {
		now, _ := w.ssmValue(home, "/amirotate/audit/"+id+"/latest")
		var newest types.Image
		for _, im := range w.images(home, "audit", id)[id] {
			if rotationOf(im) > rotationOf(newest) {
				newest = im
			}
		}
		if id == rejected {
			if now == aws.ToString(newest.ImageId) || tag(newest.Tags, rotation.TagVerification) != rotation.VerificationFailed || tag(newest.Tags, rotation.TagLatest) != "" {
				t.Errorf("rejected %s: parameter %s, newest image %s tags %v", id, now, aws.ToString(newest.ImageId), newest.Tags)
			}
			if id == ids[0] && now != before {
				t.Errorf("the parameter moved from %s to %s", before, now)
			}
		} else if now != aws.ToString(newest.ImageId) {
			t.Errorf("verified %s: parameter %s, newest image %s", id, now, aws.ToString(newest.ImageId))
		}
	}
	out, err := w.clients.EC2(home).DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag-key"), Values: []string{rotation.TagVerifies}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}}}})
	if err != nil || len(out.Reservations) != 0 {
		t.Errorf("test instances left: %+v %v", out.Reservations, err)
	}
	if res.StatesEntered["WaitVerify"] == 0 {
		t.Errorf("the state machine never waited for a verification: %v", res.StatesEntered)
	}
}

// TestVerify_ThousandInstancesStayUnderThePayloadLimit: with verification
// on, 1,000 instances in batches of 100 each get a test instance; the
// verdicts ride in the batches' state far below Step Functions' 256 KiB,
// and the waits add transitions per batch, not per image.
func TestVerify_ThousandInstancesStayUnderThePayloadLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 instances")
	}
	const n = 1000
	w := newWorld(t, ec2sim.Options{StatusCheckDelay: 50 * time.Millisecond})
	w.instances(n, "audit")
	p := policy("audit")
	p.BatchSize = 100
	p.Verify = &rotation.Verify{SubnetID: "subnet-0a1b2c3d4e5f60718", SecurityGroupIDs: []string{"sg-0a1b2c3d4e5f60718"}}
	res, sum := w.run(w.runner(), scheduled(p, time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != n {
		t.Fatalf("summary %+v", sum)
	}
	if res.StatesEntered["Verify"] == 0 {
		t.Fatalf("nothing was verified: %v", res.StatesEntered)
	}
	if res.MaxPayloadBytes >= payloadLimit {
		t.Fatalf("largest payload %d bytes (%s)", res.MaxPayloadBytes, res.MaxPayloadState)
	}
	perImage := float64(res.Transitions) / n
	t.Logf("verification at %d instances: %d transitions (%.3f per image), largest payload %d bytes in %s",
		n, res.Transitions, perImage, res.MaxPayloadBytes, res.MaxPayloadState)
	if perImage > 1 {
		t.Errorf("%.2f state transitions per image, want at most 1", perImage)
	}
}
