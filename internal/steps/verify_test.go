package steps

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

const verifyPolicyJSON = `"retention":{"keep":1},"copyTo":[{"region":"eu-west-1"}],` +
	`"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest","launchTemplates":true},` +
	`"verify":{"subnetId":"subnet-0123456789abcdef0","securityGroupIds":["sg-0123456789abcdef0"]%s}`

func verifyWorld(t *testing.T, extra string) *rtWorld {
	return newRTWorld(t, strings.Replace(verifyPolicyJSON, "%s", extra, 1))
}

// verify runs the verify step as the state machine does: again after each
// Wait while anything is being verified.
func (w *rtWorld) verify(b Batch) Batch {
	w.t.Helper()
	h := NewVerify(w.clients, Env{Now: w.clock.Now})
	for range 100 {
		out, err := h.Handle(w.ctx, b)
		if err != nil {
			w.t.Fatalf("verify: %v", err)
		}
		b = out
		if b.Verifying == 0 {
			return b
		}
		w.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
	}
	w.t.Fatalf("still verifying after 100 rounds: %+v", b.Verifications)
	return b
}

// testInstances lists the instances tagged amirotate:verifies, by state.
func (w *rtWorld) testInstances() map[string]string {
	w.t.Helper()
	out, err := w.ec2(rtHome).DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag-key"), Values: []string{rotation.TagVerifies}}}})
	if err != nil {
		w.t.Fatal(err)
	}
	states := map[string]string{}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			states[aws.ToString(in.InstanceId)] = string(in.State.Name)
		}
	}
	return states
}

func TestVerify_AGoodImageIsVerifiedAndItsTestInstanceTerminated(t *testing.T) {
	w := verifyWorld(t, "")
	recs := w.rotated("i-0000000a")
	b := w.verify(w.batchOf(recs))
	if len(b.Verifications) != 1 {
		t.Fatalf("verifications %+v", b.Verifications)
	}
	vr := b.Verifications[0]
	if vr.State != VerifyPassed || !vr.Terminated || vr.ImageID != recs[0].ImageID || vr.TestInstanceID == "" {
		t.Fatalf("verification %+v", vr)
	}
	for _, r := range b.Images {
		if r.State != rotation.StateAvailable {
			t.Errorf("record %+v; a verified image stays available", r)
		}
	}
	if st := w.testInstances(); st[vr.TestInstanceID] != "terminated" || len(st) != 1 {
		t.Errorf("test instances %v; want only %s, terminated", st, vr.TestInstanceID)
	}
	out, err := w.ec2(rtHome).DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{vr.TestInstanceID}})
	if err != nil {
		t.Fatal(err)
	}
	in := out.Reservations[0].Instances[0]
	if aws.ToString(in.SubnetId) != "subnet-0123456789abcdef0" || aws.ToString(in.ImageId) != recs[0].ImageID ||
		tagOf(in.Tags, rotation.TagVerifies) != recs[0].ImageID || tagOf(in.Tags, rotation.TagCreatedBy) != rotation.CreatedBy {
		t.Errorf("test instance %+v", in)
	}
	if o, _, why := InstanceOutcome(b, "i-0000000a"); o != OutcomeOK {
		t.Errorf("outcome %s: %s", o, why)
	}
	// A retried first call (a crashed invocation) adopts the instance the
	// first launch made: the client token is the same.
	b2 := w.batchOf(recs)
	b2 = w.verify(b2)
	if b2.Verifications[0].TestInstanceID != vr.TestInstanceID {
		t.Errorf("a retried launch made another test instance: %s, first %s", b2.Verifications[0].TestInstanceID, vr.TestInstanceID)
	}
}

func TestVerify_AnImageFailingItsStatusChecksIsRejectedWithItsCopies(t *testing.T) {
	w := verifyWorld(t, "")
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web", []string{old}, 1, track("i-0000000a"))
	recs := w.rotated("i-0000000a")
	if err := w.sim.ImpairImage(rtHome, recs[0].ImageID, ec2sim.CheckInstance); err != nil {
		t.Fatal(err)
	}
	b := w.verify(w.batchOf(recs))
	vr := b.Verifications[0]
	if vr.State != VerifyFailed || !vr.Terminated || !strings.Contains(vr.Reason, "instance status check is impaired") {
		t.Fatalf("verification %+v", vr)
	}
	for _, r := range b.Images {
		if r.State != rotation.StateRejected {
			t.Errorf("record %+v; want rejected (copies inherit the source's verdict)", r)
		}
		if im := w.describe(r.Region, r.ImageID); tagOf(im.Tags, rotation.TagVerification) != rotation.VerificationFailed {
			t.Errorf("image %s in %s not marked %s", r.ImageID, r.Region, rotation.TagVerification)
		}
	}
	if st := w.testInstances(); st[vr.TestInstanceID] != "terminated" {
		t.Errorf("test instance %s is %s", vr.TestInstanceID, st[vr.TestInstanceID])
	}
	o, _, why := InstanceOutcome(b, "i-0000000a")
	if o != OutcomeFailed || !strings.Contains(why, "failed verification") {
		t.Errorf("outcome %s: %s", o, why)
	}
	// Publish passes the rejected image by: the template keeps the old one.
	b = w.runPublish(b)
	if len(b.Published) != 0 {
		t.Errorf("published %+v", b.Published)
	}
	if _, image, _ := w.defaultImage(rtHome, lt); image != old {
		t.Errorf("template launches %s; want the previous image %s", image, old)
	}
}

func TestVerify_AFailingProbeRejectsTheImage(t *testing.T) {
	w := verifyWorld(t, `,"instanceProfile":"amirotate-verify","probe":{"document":"AWS-RunShellScript","parameters":{"commands":["systemctl is-active nginx"]}}`)
	recs := w.rotated("i-0000000a")
	if err := w.sim.ScriptCommands(ec2sim.CommandScript{Document: "AWS-RunShellScript", Outcome: ec2sim.ScriptFail, ExitCode: 3, Output: "inactive"}); err != nil {
		t.Fatal(err)
	}
	b := w.verify(w.batchOf(recs))
	vr := b.Verifications[0]
	if vr.State != VerifyFailed || !vr.Terminated || vr.CommandID == "" || !strings.Contains(vr.Reason, "exit code 3") {
		t.Fatalf("verification %+v", vr)
	}
	if b.Images[0].State != rotation.StateRejected {
		t.Errorf("records %+v", b.Images)
	}

	w2 := verifyWorld(t, `,"instanceProfile":"amirotate-verify","probe":{"document":"AWS-RunShellScript","parameters":{"commands":["true"]}}`)
	b = w2.verify(w2.batchOf(w2.rotated("i-0000000a")))
	if vr := b.Verifications[0]; vr.State != VerifyPassed || vr.CommandID == "" || !vr.Terminated {
		t.Fatalf("a passing probe: %+v", vr)
	}
}

// A crash between launch and terminate leaves a test instance running; the
// next run's first call terminates it, but only when its image proves it
// is amirotate's test instance of this policy and its client token that
// verify launched it: tags alone do not.
func TestVerify_TheNextRunSweepsLeftoversProvenByLineageOnly(t *testing.T) {
	w := verifyWorld(t, "")
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	const yesterday = "20261123T0300Z"
	launch := func(image, token string) string {
		in := &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
				{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
				{Key: aws.String(rotation.TagVerifies), Value: aws.String(image)},
				{Key: aws.String(rotation.TagRotation), Value: aws.String(yesterday)}}}}}
		if token != "" {
			in.ClientToken = aws.String(token)
		}
		out, err := w.ec2(rtHome).RunInstances(w.ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Instances[0].InstanceId)
	}
	run := func(image string) string { return launch(image, verifyToken(yesterday, image)) }
	leftover := run(old)                      // yesterday's test instance, never terminated
	forged := run(ec2sim.BaseImageID(rtHome)) // tagged alike, launched from an Amazon image
	// A production instance of the image (launched by an Auto Scaling group)
	// someone tagged as a test instance: no verify token, never terminated.
	production := launch(old, "")
	other, _ := w.mk(img{instance: "i-0000000b", daysAgo: 1}) // another instance's image: not this batch's
	otherLeftover := run(other)
	recs := w.rotated("i-0000000a")
	b := w.verify(w.batchOf(recs))
	if len(b.Swept) != 1 || b.Swept[0] != leftover {
		t.Errorf("swept %v; want only %s", b.Swept, leftover)
	}
	st := w.testInstances()
	if st[leftover] != "terminated" || st[forged] != "running" || st[otherLeftover] != "running" || st[production] != "running" {
		t.Errorf("instances %v: the leftover must be terminated, the forged, the production and the other batch's left alone", st)
	}
}

// TerminateInstances is all or nothing: a test instance gone already must
// not make the others count as terminated while they run on.
func TestVerify_ATestInstanceGoneDoesNotHideTheOthers(t *testing.T) {
	w := verifyWorld(t, "")
	out, err := w.ec2(rtHome).RunInstances(w.ctx, &ec2.RunInstancesInput{ImageId: aws.String(ec2sim.BaseImageID(rtHome)),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	running := aws.ToString(out.Instances[0].InstanceId)
	const gone = "i-0123456789abcdef0"
	b := w.batchOf(w.rotated("i-0000000a"))
	b.Verifications = []ImageVerification{
		{ImageID: "ami-0000000000000000a", TestInstanceID: gone, State: VerifyPassed},
		{ImageID: "ami-0000000000000000b", TestInstanceID: running, State: VerifyFailed},
	}
	h := NewVerify(w.clients, Env{Now: w.clock.Now})
	h.terminate(w.ctx, h.EC2.In(rtHome), &b)
	for _, vr := range b.Verifications {
		if !vr.Terminated || vr.TerminateError != "" {
			t.Errorf("%+v; want terminated", vr)
		}
	}
	d, err := w.ec2(rtHome).DescribeInstances(w.ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{running}})
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Reservations[0].Instances[0].State.Name; st != types.InstanceStateNameShuttingDown && st != types.InstanceStateNameTerminated {
		t.Errorf("%s is %s; want it terminated", running, st)
	}
}
