package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Scripts runs the policy's pre and post scripts (SSM Run Command) around
// the snapshot step, in three phases the state machine calls:
//
//   - pre: thaw what an interrupted earlier rotation left frozen (the
//     sweep), then send the pre script to every batch instance that is an
//     online managed node; the others are unreachable, with the reason.
//   - poll: read the current phase's commands; cancel a script that
//     outlived its timeout; send again what failed while retries are left.
//   - post: send the post script to every instance whose pre script was
//     sent, whatever became of it (also when CreateImage or the snapshot
//     step failed).
//
// No Lambda waits: the state machine's Wait states do, as for images.
//
// The sweep's marker is the pre command itself: its comment names the
// policy and rotation ("amirotate:pre:<policy>:<rotation>"). A pre command
// of an earlier rotation without a successful post command of that
// rotation on the same instance means the instance may still be frozen.
// A forged or stale marker costs one extra post script (thawing what is
// not frozen changes nothing) on an instance the policy selects anyway.
type Scripts struct {
	SSM ec2x.Regional[ec2x.ScriptsSSM]
	Env
}

// Script phases.
const (
	PhasePre  = "pre"
	PhasePoll = "poll"
	PhasePost = "post"
)

// ScriptsIn is the state machine's call: a phase and the batch.
type ScriptsIn struct {
	Phase string `json:"phase"`
	Batch Batch  `json:"batch"`
}

// Script run statuses.
const (
	ScriptWaiting     = "waiting" // pre: after the sweep's post script ends
	ScriptSent        = "sent"
	ScriptOK          = "ok"
	ScriptFailed      = "failed"
	ScriptTimedOut    = "timed-out"
	ScriptUnreachable = "unreachable" // not a managed node, or its agent is offline: never sent
)

const (
	// sweepWindow: how far back the sweep looks for pre commands.
	sweepWindow = 48 * time.Hour
	// firstScriptWait, scriptWait: the state machine's waits between
	// polls of scripts (a frozen file system waits for them).
	firstScriptWait = 2
	scriptWait      = 5
	// sendChunk is SendCommand's limit of instance ids.
	sendChunk = 50
)

func (s *Scripts) Handle(ctx context.Context, in ScriptsIn) (Batch, error) {
	return classified(s.handle(ctx, in))
}

func (s *Scripts) handle(ctx context.Context, in ScriptsIn) (Batch, error) {
	b := in.Batch
	bc, err := checkBatch(b, s.SSM, s.Env)
	if err != nil {
		return Batch{}, err
	}
	p := bc.policy
	if p.Scripts == nil {
		b.Scripts = nil
		return b, nil
	}
	ctx = s.auditing(ctx, p.Name, b.Rotation.ID)
	r := &scriptRunner{ssm: s.SSM.In(bc.home), region: bc.home, p: p, rot: b.Rotation, now: s.now()}
	fresh := b.Scripts == nil
	if b.Scripts == nil || in.Phase == PhasePre && b.Scripts.Phase == "" {
		b.Scripts = &ScriptsState{Phase: PhasePre}
		for _, id := range b.InstanceIDs {
			b.Scripts.Instances = append(b.Scripts.Instances, ScriptInstance{InstanceID: id})
		}
	} else {
		b.Scripts = cloneScripts(b.Scripts)
	}
	st := b.Scripts
	switch in.Phase {
	case PhasePre:
		if p.DryRun {
			break
		}
		if err := r.sweep(ctx, st); err != nil {
			return Batch{}, err
		}
		if err := r.sendPre(ctx, st); err != nil {
			return Batch{}, err
		}
	case PhasePost:
		if !p.DryRun && (fresh || st.preUnrecorded()) {
			// The pre phase may have sent pre scripts it could not record:
			// it failed before it returned its state (its Catch leads here),
			// or a retry that was refused replaced an attempt that ran. Find
			// them by their comment, so that each gets its post script.
			if err := r.sweep(ctx, st); err != nil {
				return Batch{}, err
			}
		}
		st.Phase = PhasePost
		if err := r.sendPost(ctx, st); err != nil {
			return Batch{}, err
		}
	case PhasePoll:
		if err := r.poll(ctx, st); err != nil {
			return Batch{}, err
		}
	default:
		return Batch{}, rotation.Invalid("phase", "%q: use %q, %q or %q", in.Phase, PhasePre, PhasePoll, PhasePost)
	}
	st.Pending = st.pending()
	st.WaitSeconds = 0
	if st.Pending > 0 {
		st.WaitSeconds = scriptWait
		if in.Phase != PhasePoll {
			st.WaitSeconds = firstScriptWait
		}
	}
	return b, nil
}

func cloneScripts(s *ScriptsState) *ScriptsState {
	c := *s
	c.Instances = slices.Clone(s.Instances)
	for i, in := range c.Instances {
		if in.Sweep != nil {
			sw := *in.Sweep
			c.Instances[i].Sweep = &sw
		}
	}
	return &c
}

// pending counts the runs of the current phase that have not ended.
func (s *ScriptsState) pending() int {
	n := 0
	for _, in := range s.Instances {
		runs := []ScriptRun{in.Post}
		if s.Phase == PhasePre {
			runs = []ScriptRun{in.Pre}
			if in.Sweep != nil {
				runs = append(runs, *in.Sweep)
			}
		}
		for _, r := range runs {
			if r.Status == ScriptSent || r.Status == ScriptWaiting {
				n++
			}
		}
	}
	return n
}

type scriptRunner struct {
	ssm    ec2x.ScriptsSSM
	region string
	p      rotation.Policy
	rot    rotation.Rotation
	now    time.Time
}

func comment(stage, policy, rotationID string) string {
	return "amirotate:" + stage + ":" + policy + ":" + rotationID
}

// sweep finds, for the batch's instances, pre commands of earlier
// rotations of this policy without a successful post command, and sends
// the post script of that rotation to them; their new pre script waits
// for it. Pre commands of this rotation (an earlier attempt of this step)
// are adopted instead of sent again.
func (r *scriptRunner) sweep(ctx context.Context, st *ScriptsState) error {
	preDoc, _ := r.p.Scripts.PreCommand()
	postDoc, _ := r.p.Scripts.PostCommand()
	pres, err := r.commands(ctx, preDoc, "pre")
	if err != nil {
		return err
	}
	posts, err := r.commands(ctx, postDoc, "post")
	if err != nil {
		return err
	}
	thawed := map[string]bool{} // rotation/instance with a successful post
	for _, c := range posts {
		if c.Status == ssmtypes.CommandStatusSuccess {
			for _, id := range c.InstanceIds {
				thawed[rotationOf(c)+"/"+id] = true
			}
		}
	}
	idx := st.index()
	leftover := map[string][]string{} // rotation → instances
	for _, c := range pres {
		rot := rotationOf(c)
		for _, id := range c.InstanceIds {
			i, ok := idx[id]
			if !ok {
				continue
			}
			in := &st.Instances[i]
			if rot == r.rot.ID {
				if in.Pre.CommandID == "" {
					in.Pre = ScriptRun{Status: ScriptSent, CommandID: aws.ToString(c.CommandId), Sent: aws.ToTime(c.RequestedDateTime), Attempts: 1}
				}
				continue
			}
			if !thawed[rot+"/"+id] && in.Sweep == nil && !slices.Contains(leftover[rot], id) {
				leftover[rot] = append(leftover[rot], id)
			}
		}
	}
	for _, rot := range sortedKeys(leftover) {
		ids := leftover[rot]
		sent, err := r.send(ctx, "post", rot, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			in := &st.Instances[idx[id]]
			run := sent[id]
			run.Reason = "thaws what rotation " + rot + " left: its pre script ran without a successful post script"
			in.Sweep = &run
			if in.Pre.Status == "" {
				in.Pre.Status = ScriptWaiting
			}
		}
	}
	return nil
}

func rotationOf(c ssmtypes.Command) string {
	parts := strings.Split(aws.ToString(c.Comment), ":")
	return parts[len(parts)-1]
}

// commands lists this policy's commands of a stage within the sweep window.
func (r *scriptRunner) commands(ctx context.Context, document, stage string) ([]ssmtypes.Command, error) {
	prefix := comment(stage, r.p.Name, "")
	var out []ssmtypes.Command
	pg := ssm.NewListCommandsPaginator(r.ssm, &ssm.ListCommandsInput{Filters: []ssmtypes.CommandFilter{
		{Key: ssmtypes.CommandFilterKeyDocumentName, Value: aws.String(document)},
		{Key: ssmtypes.CommandFilterKeyInvokedAfter, Value: aws.String(r.now.Add(-sweepWindow).UTC().Format(time.RFC3339))},
	}})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s commands of %s in %s: %w", stage, document, r.region, err)
		}
		for _, c := range page.Commands {
			if strings.HasPrefix(aws.ToString(c.Comment), prefix) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// sendPre sends the pre script to the instances that have none yet and
// are online managed nodes.
func (r *scriptRunner) sendPre(ctx context.Context, st *ScriptsState) error {
	var ids []string
	for _, in := range st.Instances {
		if in.Pre.Status == "" {
			ids = append(ids, in.InstanceID)
		}
	}
	reachable, err := r.reachable(ctx, ids)
	if err != nil {
		return err
	}
	var send []string
	idx := st.index()
	for _, id := range ids {
		if why, ok := reachable[id]; ok && why != "" {
			st.Instances[idx[id]].Pre = ScriptRun{Status: ScriptUnreachable, Reason: why}
			continue
		}
		send = append(send, id)
	}
	sent, err := r.send(ctx, "pre", r.rot.ID, send)
	if err != nil {
		return err
	}
	for id, run := range sent {
		st.Instances[idx[id]].Pre = run
	}
	return nil
}

// sendPost sends the post script wherever the pre script was sent.
func (r *scriptRunner) sendPost(ctx context.Context, st *ScriptsState) error {
	var ids []string
	for _, in := range st.Instances {
		if in.Pre.CommandID != "" && in.Post.Status == "" {
			ids = append(ids, in.InstanceID)
		}
	}
	sent, err := r.send(ctx, "post", r.rot.ID, ids)
	if err != nil {
		return err
	}
	idx := st.index()
	for id, run := range sent {
		st.Instances[idx[id]].Post = run
	}
	return nil
}

// reachable says, for each id, why a command cannot reach it ("" = it can).
func (r *scriptRunner) reachable(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range ids {
		out[id] = "not a managed node: no SSM Agent registered for it (it needs the agent and an instance profile that allows Systems Manager)"
	}
	for chunk := range slices.Chunk(ids, sendChunk) {
		pg := ssm.NewDescribeInstanceInformationPaginator(r.ssm, &ssm.DescribeInstanceInformationInput{
			Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: chunk}}, MaxResults: aws.Int32(50)})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing managed nodes in %s: %w", r.region, err)
			}
			for _, info := range page.InstanceInformationList {
				id := aws.ToString(info.InstanceId)
				if info.PingStatus == ssmtypes.PingStatusOnline {
					out[id] = ""
				} else {
					out[id] = fmt.Sprintf("SSM Agent is %s (last ping %s)", info.PingStatus, aws.ToTime(info.LastPingDateTime).UTC().Format(time.RFC3339))
				}
			}
		}
	}
	return out, nil
}

// send sends a stage's script of rotation rot to ids, 50 per command. An
// instance SendCommand refuses (no longer a managed node) ends unreachable.
func (r *scriptRunner) send(ctx context.Context, stage, rot string, ids []string) (map[string]ScriptRun, error) {
	out := map[string]ScriptRun{}
	sc := r.p.Scripts.Pre
	doc, params := r.p.Scripts.PreCommand()
	if stage == "post" {
		sc = r.p.Scripts.Post
		doc, params = r.p.Scripts.PostCommand()
	}
	var sendIDs func(ids []string) error
	sendIDs = func(ids []string) error {
		res, err := r.ssm.SendCommand(ctx, &ssm.SendCommandInput{
			DocumentName: aws.String(doc), InstanceIds: ids, Parameters: params,
			TimeoutSeconds: aws.Int32(int32(max(sc.TimeoutSeconds, rotation.MinScriptTimeoutSeconds))),
			Comment:        aws.String(comment(stage, r.p.Name, rot)),
		})
		var invalid *ssmtypes.InvalidInstanceId
		var platform *ssmtypes.UnsupportedPlatformType
		if errors.As(err, &invalid) || errors.As(err, &platform) {
			audit(ctx, "SendCommand", r.region, ids, stage+" script "+doc, err)
			if len(ids) == 1 {
				out[ids[0]] = ScriptRun{Status: ScriptUnreachable, Reason: "SendCommand refused it: " + errText(err)}
				if platform != nil {
					out[ids[0]] = ScriptRun{Status: ScriptUnreachable, Reason: "the document " + doc + " does not run on this instance's platform: " + errText(err)}
				}
				return nil
			}
			for _, id := range ids { // find the one(s) it refuses
				if err := sendIDs([]string{id}); err != nil {
					return err
				}
			}
			return nil
		}
		if err != nil {
			audit(ctx, "SendCommand", r.region, ids, stage+" script "+doc, err)
			return fmt.Errorf("sending the %s script (%s) in %s: %w", stage, doc, r.region, err)
		}
		cmd := aws.ToString(res.Command.CommandId)
		audit(ctx, "SendCommand", r.region, append([]string{cmd}, ids...), stage+" script "+doc, nil)
		for _, id := range ids {
			out[id] = ScriptRun{Status: ScriptSent, CommandID: cmd, Sent: r.now, Attempts: 1}
		}
		return nil
	}
	for chunk := range slices.Chunk(ids, sendChunk) {
		if err := sendIDs(chunk); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// poll reads the current phase's commands (and, before the pre script, the
// sweep's), times out what outlived its script's timeout, retries failures.
func (r *scriptRunner) poll(ctx context.Context, st *ScriptsState) error {
	type ref struct {
		i     int
		which string // pre, post, sweep
	}
	byCommand := map[string][]ref{}
	for i, in := range st.Instances {
		if st.Phase == PhasePre {
			if in.Sweep != nil && in.Sweep.Status == ScriptSent {
				byCommand[in.Sweep.CommandID] = append(byCommand[in.Sweep.CommandID], ref{i, "sweep"})
			}
			if in.Pre.Status == ScriptSent {
				byCommand[in.Pre.CommandID] = append(byCommand[in.Pre.CommandID], ref{i, "pre"})
			}
		} else if in.Post.Status == ScriptSent {
			byCommand[in.Post.CommandID] = append(byCommand[in.Post.CommandID], ref{i, "post"})
		}
	}
	for _, cmd := range sortedKeys(byCommand) {
		invs, err := r.invocations(ctx, cmd)
		if err != nil {
			return err
		}
		for _, rf := range byCommand[cmd] {
			in := &st.Instances[rf.i]
			run, timeout := &in.Pre, r.p.Scripts.Pre.TimeoutSeconds
			switch rf.which {
			case "post", "sweep":
				run, timeout = &in.Post, r.p.Scripts.Post.TimeoutSeconds
				if rf.which == "sweep" {
					run = in.Sweep
				}
			}
			r.update(ctx, run, invs[in.InstanceID], in.InstanceID, time.Duration(timeout)*time.Second)
		}
	}
	// Retries, and the pre scripts that waited for the sweep.
	var preRetry, postRetry, afterSweep []string
	idx := st.index()
	for _, in := range st.Instances {
		switch {
		case st.Phase == PhasePre && in.Pre.Status == ScriptWaiting && (in.Sweep == nil || in.Sweep.Status != ScriptSent):
			afterSweep = append(afterSweep, in.InstanceID)
		case st.Phase == PhasePre && retryable(in.Pre, r.p.Scripts.Pre.Retries):
			preRetry = append(preRetry, in.InstanceID)
		case st.Phase == PhasePost && retryable(in.Post, r.p.Scripts.Post.Retries):
			postRetry = append(postRetry, in.InstanceID)
		}
	}
	for i := range st.Instances {
		if slices.Contains(afterSweep, st.Instances[i].InstanceID) {
			st.Instances[i].Pre.Status = ""
		}
	}
	if len(afterSweep) > 0 {
		if err := r.sendPre(ctx, st); err != nil {
			return err
		}
	}
	for _, x := range []struct {
		stage string
		ids   []string
	}{{"pre", preRetry}, {"post", postRetry}} {
		sent, err := r.send(ctx, x.stage, r.rot.ID, x.ids)
		if err != nil {
			return err
		}
		for id, run := range sent {
			in := &st.Instances[idx[id]]
			old := in.Pre
			if x.stage == "post" {
				old = in.Post
			}
			if run.Status == ScriptSent {
				run.Attempts = old.Attempts + 1
				run.Reason = "attempt " + fmt.Sprint(run.Attempts) + "; before: " + old.Reason
			}
			if x.stage == "pre" {
				in.Pre = run
			} else {
				in.Post = run
			}
		}
	}
	return nil
}

// preUnrecorded tells whether an instance has no pre command on record: its
// pre script may still have been sent.
func (st *ScriptsState) preUnrecorded() bool {
	return slices.ContainsFunc(st.Instances, func(in ScriptInstance) bool { return in.Pre.CommandID == "" })
}

func retryable(run ScriptRun, retries int) bool {
	return (run.Status == ScriptFailed || run.Status == ScriptTimedOut) && run.Attempts <= retries
}

// invocations reads a command's invocations by instance.
func (r *scriptRunner) invocations(ctx context.Context, cmd string) (map[string]ssmtypes.CommandInvocation, error) {
	out := map[string]ssmtypes.CommandInvocation{}
	pg := ssm.NewListCommandInvocationsPaginator(r.ssm, &ssm.ListCommandInvocationsInput{CommandId: aws.String(cmd), Details: true})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading command %s in %s: %w", cmd, r.region, err)
		}
		for _, inv := range page.CommandInvocations {
			out[aws.ToString(inv.InstanceId)] = inv
		}
	}
	return out, nil
}

// update applies an invocation's state to a run; a run that outlived its
// timeout is cancelled and ends timed out.
func (r *scriptRunner) update(ctx context.Context, run *ScriptRun, inv ssmtypes.CommandInvocation, instanceID string, timeout time.Duration) {
	detail := aws.ToString(inv.StatusDetails)
	out := ""
	for _, pl := range inv.CommandPlugins {
		out = strings.TrimSpace(aws.ToString(pl.Output))
	}
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	switch inv.Status {
	case ssmtypes.CommandInvocationStatusSuccess:
		run.Status, run.Reason = ScriptOK, ""
		return
	case ssmtypes.CommandInvocationStatusFailed, ssmtypes.CommandInvocationStatusCancelled:
		run.Status, run.Reason = ScriptFailed, strings.TrimSpace(fmt.Sprintf("%s (exit %d) %s", detail, responseCode(inv), out))
		return
	case ssmtypes.CommandInvocationStatusTimedOut:
		run.Status, run.Reason = ScriptTimedOut, detail
		if detail == "DeliveryTimedOut" {
			run.Reason = "DeliveryTimedOut: the SSM Agent did not take the command (offline?)"
		}
		return
	}
	if r.now.Sub(run.Sent) < timeout {
		return
	}
	_, err := r.ssm.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(run.CommandID), InstanceIds: []string{instanceID}})
	audit(ctx, "CancelCommand", r.region, []string{run.CommandID, instanceID}, "script outlived its timeout", err)
	status := string(inv.Status)
	if status == "" {
		status = "not yet registered"
	}
	run.Status, run.Reason = ScriptTimedOut, fmt.Sprintf("still %s after %s: cancelled", status, timeout)
}

func responseCode(inv ssmtypes.CommandInvocation) int32 {
	for _, pl := range inv.CommandPlugins {
		return pl.ResponseCode
	}
	return -1
}

func (s *ScriptsState) index() map[string]int {
	idx := make(map[string]int, len(s.Instances))
	for i, in := range s.Instances {
		idx[in.InstanceID] = i
	}
	return idx
}

// Instance returns the scripts' state of one instance.
func (s *ScriptsState) Instance(id string) (ScriptInstance, bool) {
	if s == nil {
		return ScriptInstance{}, false
	}
	for _, in := range s.Instances {
		if in.InstanceID == id {
			return in, true
		}
	}
	return ScriptInstance{}, false
}

// PreFailed says why an instance's pre script did not succeed ("" = it did).
func (in ScriptInstance) PreFailed() string {
	if in.Pre.Status == ScriptOK {
		return ""
	}
	status := in.Pre.Status
	if status == "" {
		status = "not run"
	}
	return strings.TrimSpace("pre script " + status + ": " + in.Pre.Reason)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}
