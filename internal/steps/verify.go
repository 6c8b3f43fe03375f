package steps

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Verify boots each new image of the batch before anything publishes it:
// a test instance from the image in the home region (tagged
// amirotate:verifies=<image>), running with both status checks ok, then the
// policy's probe (an SSM Run Command) when it has one. The test instance is
// terminated as soon as its verdict is known, whatever it is. An image that
// fails becomes rejected, with its copies: tag, publish and retention pass
// it by, and its instance's rotation fails with the reason.
//
// Like poll, the step never waits: the state machine calls it again after
// a Wait while anything is being verified. Its first call also sweeps the
// test instances an earlier run left behind (a crash between launch and
// terminate): only those proven by their image's lineage, never by a tag
// alone.
type Verify struct {
	EC2 ec2x.Regional[ec2x.VerifyEC2]
	SSM ec2x.Regional[ec2x.VerifySSM]
	Env
}

// Verification states.
const (
	VerifyLaunching = "launching" // waiting for running and both status checks
	VerifyProbing   = "probing"   // the probe command runs
	VerifyPassed    = "passed"
	VerifyFailed    = "failed"
)

// Handle starts or follows the verifications and sets b.Verifying and
// b.WaitSeconds.
func (h *Verify) Handle(ctx context.Context, b Batch) (Batch, error) {
	return classified(h.handle(ctx, b))
}

func (h *Verify) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, h.EC2, h.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = h.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	b.Policy, b.Rotation.Home = bc.policy, bc.home
	v := bc.policy.Verify
	if v == nil || bc.policy.DryRun {
		b.Verifying = 0
		return b, nil
	}
	cl := h.EC2.In(bc.home)
	now := h.now()
	if b.VerifyPolls == 0 {
		b.Swept = h.sweep(ctx, cl, b)
		h.launch(ctx, cl, *v, &b, now)
	}
	b.VerifyPolls++
	h.follow(ctx, cl, *v, &b, now)
	h.terminate(ctx, cl, &b)
	h.judge(ctx, &b)
	b.Verifying = 0
	for _, vr := range b.Verifications {
		if !vr.done() {
			b.Verifying++
		}
	}
	b.WaitSeconds = 0
	if b.Verifying > 0 {
		b.WaitSeconds = max(1, nextWait(bc.policy, b.VerifyPolls-1, now, now.Add(time.Duration(v.TimeoutMinutes)*time.Minute)))
	}
	return b, nil
}

// maxTerminateAttempts bounds the rounds spent on a test instance that
// cannot be terminated; it is then reported, and the next run's sweep
// terminates it.
const maxTerminateAttempts = 5

// done: the verdict is known and the test instance is gone (or was never
// made, or could not be terminated after maxTerminateAttempts).
func (vr ImageVerification) done() bool {
	return (vr.State == VerifyPassed || vr.State == VerifyFailed) &&
		(vr.TestInstanceID == "" || vr.Terminated || vr.TerminateAttempts >= maxTerminateAttempts)
}

// verifyToken is RunInstances' idempotency token: a retried launch (a
// crashed or timed-out invocation) gets the instance the first one made.
func verifyToken(rotationID, imageID string) string {
	sum := sha256.Sum256([]byte("amirotate-verify\x00" + rotationID + "\x00" + imageID))
	return hex.EncodeToString(sum[:])[:64]
}

// launch starts a test instance for each available source image of the
// batch that has none yet.
func (h *Verify) launch(ctx context.Context, cl ec2x.VerifyEC2, v rotation.Verify, b *Batch, now time.Time) {
	have := map[string]bool{}
	for _, vr := range b.Verifications {
		have[vr.ImageID] = true
	}
	for _, r := range b.Images {
		if r.SourceImageID != "" || r.State != rotation.StateAvailable || r.ImageID == "" || have[r.ImageID] {
			continue
		}
		vr := ImageVerification{InstanceID: r.InstanceID, ImageID: r.ImageID, State: VerifyLaunching, StartedAt: now}
		tags := []types.Tag{
			{Key: aws.String(rotation.TagCreatedBy), Value: aws.String(rotation.CreatedBy)},
			{Key: aws.String(rotation.TagVerifies), Value: aws.String(r.ImageID)},
			{Key: aws.String(rotation.TagRotation), Value: aws.String(b.Rotation.ID)},
			{Key: aws.String("Name"), Value: aws.String("amirotate-verify-" + r.ImageID)},
		}
		in := &ec2.RunInstancesInput{
			ImageId:          aws.String(r.ImageID),
			InstanceType:     types.InstanceType(v.InstanceType),
			MinCount:         aws.Int32(1),
			MaxCount:         aws.Int32(1),
			SubnetId:         aws.String(v.SubnetID),
			SecurityGroupIds: v.SecurityGroupIDs,
			ClientToken:      aws.String(verifyToken(b.Rotation.ID, r.ImageID)),
			// A test instance that is shut down from inside is gone, not stopped.
			InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
			TagSpecifications: []types.TagSpecification{
				{ResourceType: types.ResourceTypeInstance, Tags: tags},
				{ResourceType: types.ResourceTypeVolume, Tags: tags},
			},
		}
		if v.InstanceProfile != "" {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(v.InstanceProfile)}
		}
		if v.UserData != "" {
			in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(v.UserData)))
		}
		out, err := cl.RunInstances(ctx, in)
		audit(ctx, "RunInstances", b.Rotation.Home, []string{r.ImageID}, "verify the new image of "+r.InstanceID, err)
		switch {
		case err != nil:
			vr.State, vr.Reason = VerifyFailed, fmt.Sprintf("launching a test instance from %s: %v", r.ImageID, err)
		case len(out.Instances) == 0:
			vr.State, vr.Reason = VerifyFailed, fmt.Sprintf("launching a test instance from %s: no instance returned", r.ImageID)
		default:
			vr.TestInstanceID = aws.ToString(out.Instances[0].InstanceId)
		}
		b.Verifications = append(b.Verifications, vr)
	}
}

// follow reads the test instances' status checks (one DescribeInstanceStatus
// per 100 instances), then starts or reads the probes.
func (h *Verify) follow(ctx context.Context, cl ec2x.VerifyEC2, v rotation.Verify, b *Batch, now time.Time) {
	var ids []string
	for _, vr := range b.Verifications {
		if vr.State == VerifyLaunching && vr.TestInstanceID != "" {
			ids = append(ids, vr.TestInstanceID)
		}
	}
	statuses := map[string]types.InstanceStatus{}
	var readErr error
	for c := range slices.Chunk(ids, 100) {
		out, err := cl.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: c, IncludeAllInstances: aws.Bool(true)})
		if err != nil {
			readErr = err // tried again next round, unless the time is up
			continue
		}
		for _, st := range out.InstanceStatuses {
			statuses[aws.ToString(st.InstanceId)] = st
		}
	}
	timeout := time.Duration(v.TimeoutMinutes) * time.Minute
	for i := range b.Verifications {
		vr := &b.Verifications[i]
		switch vr.State {
		case VerifyLaunching:
			if vr.TestInstanceID == "" {
				continue
			}
			st, ok := statuses[vr.TestInstanceID]
			switch verdict, why := statusVerdict(st, ok); verdict {
			case VerifyFailed:
				vr.State, vr.Reason = VerifyFailed, why
			case VerifyPassed:
				if v.Probe == nil {
					vr.State, vr.Reason = VerifyPassed, ""
				} else {
					vr.State, vr.Reason = VerifyProbing, ""
				}
			default:
				vr.Reason = why
				if readErr != nil {
					vr.Reason = fmt.Sprintf("reading status checks: %v", readErr)
				}
			}
		}
		if vr.State == VerifyProbing {
			h.probe(ctx, v, b.Rotation.Home, vr)
		}
		if (vr.State == VerifyLaunching || vr.State == VerifyProbing) && now.Sub(vr.StartedAt) >= timeout {
			vr.State, vr.Reason = VerifyFailed, fmt.Sprintf("timed out after %d minutes (verify.timeoutMinutes): %s", v.TimeoutMinutes, orDefault(vr.Reason, "still "+vr.State))
		}
	}
}

// statusVerdict judges one test instance by its state and status checks:
// passed when running with both checks ok, failed when a check is impaired
// or the instance stopped or went away.
func statusVerdict(st types.InstanceStatus, found bool) (string, string) {
	if !found || st.InstanceState == nil {
		return "", "waiting for the test instance to show up"
	}
	state := st.InstanceState.Name
	switch state {
	case types.InstanceStateNamePending:
		return "", "test instance pending"
	case types.InstanceStateNameRunning:
	default:
		return VerifyFailed, fmt.Sprintf("test instance %s (it must stay running)", state)
	}
	sys, inst := checkOf(st.SystemStatus), checkOf(st.InstanceStatus)
	for _, c := range []struct {
		name string
		s    types.SummaryStatus
	}{{"system", sys}, {"instance", inst}} {
		if c.s == types.SummaryStatusImpaired {
			return VerifyFailed, fmt.Sprintf("the test instance's %s status check is impaired (EC2 reports it unreachable)", c.name)
		}
	}
	if sys == types.SummaryStatusOk && inst == types.SummaryStatusOk {
		return VerifyPassed, ""
	}
	return "", fmt.Sprintf("status checks %s/%s", orDefault(string(sys), "pending"), orDefault(string(inst), "pending"))
}

func checkOf(s *types.InstanceStatusSummary) types.SummaryStatus {
	if s == nil {
		return ""
	}
	return s.Status
}

// probe sends the probe command once, then reads its invocation.
func (h *Verify) probe(ctx context.Context, v rotation.Verify, region string, vr *ImageVerification) {
	cl := h.SSM.In(region)
	if vr.CommandID == "" {
		out, err := cl.SendCommand(ctx, &ssm.SendCommandInput{
			DocumentName: aws.String(v.Probe.Document),
			InstanceIds:  []string{vr.TestInstanceID},
			Parameters:   v.Probe.Parameters,
			Comment:      aws.String("amirotate verify " + vr.ImageID),
		})
		audit(ctx, "ssm:SendCommand", region, []string{vr.TestInstanceID, v.Probe.Document}, "probe the new image "+vr.ImageID, err)
		switch {
		case ec2x.Code(err) == "InvalidInstanceId":
			// The agent has not registered yet: tried again next round.
			vr.Reason = "waiting for the test instance to become an SSM managed node"
		case err != nil && ec2x.IsRetryable(err):
			vr.Reason = fmt.Sprintf("sending the probe: %v", err)
		case err != nil:
			vr.State, vr.Reason = VerifyFailed, fmt.Sprintf("sending the probe %s: %v", v.Probe.Document, err)
		default:
			vr.CommandID = aws.ToString(out.Command.CommandId)
		}
		return
	}
	out, err := cl.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(vr.CommandID), InstanceId: aws.String(vr.TestInstanceID)})
	if err != nil {
		vr.Reason = fmt.Sprintf("reading the probe %s: %v", vr.CommandID, err) // InvocationDoesNotExist until it registers
		return
	}
	switch out.Status {
	case ssmtypes.CommandInvocationStatusSuccess:
		vr.State, vr.Reason = VerifyPassed, ""
	case ssmtypes.CommandInvocationStatusFailed, ssmtypes.CommandInvocationStatusTimedOut, ssmtypes.CommandInvocationStatusCancelled:
		why := fmt.Sprintf("the probe %s ended %s (%s, exit code %d)", v.Probe.Document, out.Status, aws.ToString(out.StatusDetails), out.ResponseCode)
		if e := strings.TrimSpace(aws.ToString(out.StandardErrorContent)); e != "" {
			why += ": " + truncate(e, 200)
		}
		vr.State, vr.Reason = VerifyFailed, why
	default:
		vr.Reason = "probe " + string(out.Status)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// terminate ends every test instance whose verdict is known.
func (h *Verify) terminate(ctx context.Context, cl ec2x.VerifyEC2, b *Batch) {
	var ids []string
	byID := map[string]*ImageVerification{}
	for i := range b.Verifications {
		vr := &b.Verifications[i]
		if (vr.State == VerifyPassed || vr.State == VerifyFailed) && vr.TestInstanceID != "" && !vr.Terminated && vr.TerminateAttempts < maxTerminateAttempts {
			ids = append(ids, vr.TestInstanceID)
			byID[vr.TestInstanceID] = vr
		}
	}
	if len(ids) == 0 {
		return
	}
	_, err := cl.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
	audit(ctx, "TerminateInstances", b.Rotation.Home, ids, "test instances whose verdict is known", err)
	if err != nil && ec2x.IsNotFound(err) && len(ids) > 1 {
		// The call is all or nothing: one instance gone already made it
		// terminate none. Each alone tells which is gone.
		for _, id := range ids {
			_, err := cl.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
			audit(ctx, "TerminateInstances", b.Rotation.Home, []string{id}, "test instance whose verdict is known", err)
			terminated(byID[id], err)
		}
		return
	}
	for _, id := range ids {
		terminated(byID[id], err)
	}
}

// terminated records the answer to terminating vr's test instance: gone
// (NotFound) is terminated too; any other error is tried again next round.
func terminated(vr *ImageVerification, err error) {
	vr.TerminateAttempts++
	switch {
	case err == nil || ec2x.IsNotFound(err):
		vr.Terminated, vr.TerminateError = true, ""
	default:
		vr.TerminateError = err.Error()
	}
}

// judge applies the verdicts to the records: a failed image and its copies
// become rejected (and the images are marked), once.
func (h *Verify) judge(ctx context.Context, b *Batch) {
	failed := map[string]string{} // source image → reason
	for _, vr := range b.Verifications {
		if vr.State == VerifyFailed {
			failed[vr.ImageID] = vr.Reason
		}
	}
	byRegion := map[string][]string{}
	for i := range b.Images {
		r := &b.Images[i]
		if r.State == rotation.StateRejected {
			continue
		}
		src := r.ImageID
		if r.SourceImageID != "" {
			src = r.SourceImageID
		}
		why, ok := failed[src]
		if !ok {
			continue
		}
		if r.SourceImageID != "" {
			why = "its source image " + src + " failed verification: " + why
		} else {
			why = "failed verification: " + why
		}
		if r.ImageID != "" && (r.State == rotation.StateAvailable || r.State == rotation.StatePending) {
			byRegion[r.Region] = append(byRegion[r.Region], r.ImageID)
		}
		r.State, r.Error = rotation.StateRejected, why
	}
	for _, region := range slices.Sorted(maps.Keys(byRegion)) {
		ids := byRegion[region]
		_, err := h.EC2.In(region).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids,
			Tags: []types.Tag{{Key: aws.String(rotation.TagVerification), Value: aws.String(rotation.VerificationFailed)}}})
		audit(ctx, "CreateTags", region, ids, "mark images that failed verification", err)
		if err != nil {
			for i := range b.Images {
				if b.Images[i].Region == region && slices.Contains(ids, b.Images[i].ImageID) {
					b.Images[i].Error += fmt.Sprintf("; marking it %s=%s failed: %v", rotation.TagVerification, rotation.VerificationFailed, err)
				}
			}
		}
	}
	recount(b, b.Policy)
}

// sweep terminates test instances an earlier run left running: instances
// tagged amirotate:verifies whose image is provably one of this policy's
// images of the batch's instances (its name agrees with its tags) and is
// the image the instance runs. A tag alone proves nothing: anyone may write
// amirotate:verifies on any instance. The batch's own new images are left
// out: their test instances are this run's (a retried launch adopts them by
// client token).
func (h *Verify) sweep(ctx context.Context, cl ec2x.VerifyEC2, b Batch) []string {
	current := map[string]bool{}
	for _, r := range b.Images {
		current[r.ImageID] = true
	}
	batch := map[string]bool{}
	for _, id := range b.InstanceIDs {
		batch[id] = true
	}
	type leftover struct{ id, image string }
	var found []leftover
	pg := ec2.NewDescribeInstancesPaginator(cl, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		ec2x.Filter("tag-key", rotation.TagVerifies),
		ec2x.Filter("tag:"+rotation.TagCreatedBy, rotation.CreatedBy),
		ec2x.Filter("instance-state-name", "pending", "running", "stopping", "stopped"),
	}})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil // the next run sweeps again; verification does not depend on it
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				image := aws.ToString(in.ImageId)
				if tagOf(in.Tags, rotation.TagVerifies) != image || current[image] {
					continue
				}
				// Tags can be written by anyone; the client token only by
				// the RunInstances call that launched the instance: only a
				// test instance amirotate launched carries verify's token.
				if aws.ToString(in.ClientToken) != verifyToken(tagOf(in.Tags, rotation.TagRotation), image) {
					continue
				}
				found = append(found, leftover{aws.ToString(in.InstanceId), image})
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	ids := make([]string, 0, len(found))
	for _, f := range found {
		ids = append(ids, f.image)
	}
	images, err := describeImagesByID(ctx, cl, ids)
	if err != nil {
		return nil
	}
	var doomed []string
	for _, f := range found {
		img, ok := images[f.image]
		if !ok {
			continue
		}
		ri := toImage(img, b.Rotation.Home)
		if rotation.Unproven(ri, b.Policy.Name) != "" || !batch[ri.Tags[rotation.TagInstanceID]] {
			continue
		}
		doomed = append(doomed, f.id)
	}
	if len(doomed) == 0 {
		return nil
	}
	slices.Sort(doomed)
	_, err = cl.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: doomed})
	audit(ctx, "TerminateInstances", b.Rotation.Home, doomed, "test instances an earlier run left behind", err)
	if err != nil {
		return nil
	}
	return doomed
}

func tagOf(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
