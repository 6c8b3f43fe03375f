package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// Pre and post scripts run against the simulator's Run Command. The
// simulator's clock runs fast (a second every few milliseconds) so that
// script timeouts of tens of seconds pass within the test; the steps read
// the same clock.

type scriptsWorld struct {
	*world
	clock *ec2sim.ShiftedClock
}

func newScriptsWorld(t *testing.T) *scriptsWorld {
	clock := ec2sim.NewShiftedClock()
	w := &scriptsWorld{world: newWorld(t, ec2sim.Options{Clock: clock, Regions: []string{home}}), clock: clock}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			clock.Advance(time.Second)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

func (w *scriptsWorld) scriptsRunner() *localrun.Runner {
	w.t.Helper()
	waitMs, retryMs := 20, 20
	r, err := localrun.New(localrun.Options{
		Handlers: localrun.StepHandlers(w.clients, steps.Env{Now: w.sim.Now}),
		WaitMs:   &waitMs, RetryMs: &retryMs,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func appdb(onPreFailure string) rotation.Policy {
	p := policy("appdb")
	p.CopyTo = nil
	p.Publish = rotation.Publish{}
	// The pre script's quiesce must hold until CreateImage; this world's
	// clock runs 200 times faster than the wall clock, so it is given the
	// longest timeout (18 s of wall time) to stay clear of a loaded machine.
	p.Scripts = &rotation.Scripts{Preset: rotation.PresetLinuxFSFreeze, MountPoints: []string{"/data"}, OnPreFailure: onPreFailure,
		Pre: &rotation.Script{TimeoutSeconds: rotation.MaxScriptTimeoutSeconds}}
	return p
}

// commandsOn: the simulator's record of the policy's commands on an
// instance, by stage (pre/post), in the order they were sent.
type sentCommand struct {
	stage, rotation string
	requested       time.Time
	inv             ec2sim.InvocationRecord
}

func (w *scriptsWorld) commandsOn(instanceID string) []sentCommand {
	var out []sentCommand
	for _, c := range w.sim.Commands(home) {
		for _, inv := range c.Invocations {
			if inv.InstanceID != instanceID {
				continue
			}
			stage := "pre"
			if cmds := strings.Join(c.Parameters["commands"], "\n"); strings.Contains(cmds, "echo thawed") || slices.Contains(c.Parameters["Action"], "Thaw") {
				stage = "post"
			}
			out = append(out, sentCommand{stage: stage, requested: c.Requested, inv: inv})
		}
	}
	return out
}

// expectNothingFrozen: every pre script that ran on an instance is
// followed by a post script that succeeded.
func (w *scriptsWorld) expectNothingFrozen(ids []string) {
	w.t.Helper()
	for _, id := range ids {
		frozen := false
		for _, c := range w.commandsOn(id) {
			switch {
			case c.stage == "pre" && !c.inv.Started.IsZero():
				frozen = true
			case c.stage == "post" && c.inv.Status == "Success":
				frozen = false
			}
		}
		if frozen {
			w.t.Errorf("%s: a pre script ran and no post script succeeded after it: %+v", id, w.commandsOn(id))
		}
	}
}

func (w *scriptsWorld) image(instanceID string) (types.Image, bool) {
	w.t.Helper()
	out, err := ec2.NewFromConfig(w.clients.Config()).DescribeImages(context.Background(), &ec2.DescribeImagesInput{
		Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("tag:amirotate:instance-id"), Values: []string{instanceID}}}})
	if err != nil {
		w.t.Fatal(err)
	}
	if len(out.Images) == 0 {
		return types.Image{}, false
	}
	return out.Images[len(out.Images)-1], true
}

func problemOf(sum steps.Summary, id string) steps.Problem {
	for _, p := range sum.Problems {
		if p.InstanceID == id {
			return p
		}
	}
	return steps.Problem{}
}

func TestScripts_PreThenImageThenPostInOrder(t *testing.T) {
	w := newScriptsWorld(t)
	ids := w.instances(3, "appdb")
	res, sum := w.run(w.scriptsRunner(), scheduled(appdb(rotation.OnPreFailureSkip), t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != 3 || sum.Failed {
		t.Fatalf("summary %+v", sum)
	}
	for _, id := range ids {
		cmds := w.commandsOn(id)
		if len(cmds) != 2 || cmds[0].stage != "pre" || cmds[1].stage != "post" {
			t.Fatalf("%s: commands %+v, want pre then post", id, cmds)
		}
		img, ok := w.image(id)
		if !ok {
			t.Fatalf("%s: no image", id)
		}
		created, _ := time.Parse(time.RFC3339Nano, aws.ToString(img.CreationDate))
		pre, post := cmds[0], cmds[1]
		// The simulator's recorded times: the pre script ended before
		// CreateImage was called, and the post script was sent after it.
		if pre.inv.Status != "Success" || pre.inv.Ended.After(created) || post.requested.Before(created) || post.inv.Status != "Success" {
			t.Errorf("%s: pre %s ended %s, CreateImage %s, post sent %s (%s)", id, pre.inv.Status, pre.inv.Ended, created, post.requested, post.inv.Status)
		}
		if tag(img.Tags, rotation.TagConsistency) != rotation.ConsistencyApplication {
			t.Errorf("%s: consistency tag %q", id, tag(img.Tags, rotation.TagConsistency))
		}
	}
	w.expectNothingFrozen(ids)
}

func TestScripts_FailingPreUnderEachSetting(t *testing.T) {
	for _, setting := range []string{rotation.OnPreFailureSkip, rotation.OnPreFailureCrashConsistent} {
		t.Run(setting, func(t *testing.T) {
			w := newScriptsWorld(t)
			ids := w.instances(3, "appdb")
			bad := ids[1]
			// Its pre script (the first command it gets) fails.
			if err := w.sim.ScriptCommands(ec2sim.CommandScript{InstanceID: bad, Outcome: ec2sim.ScriptFail, ExitCode: 2, Output: "/data is not a mount point", Count: 1}); err != nil {
				t.Fatal(err)
			}
			_, sum := w.run(w.scriptsRunner(), scheduled(appdb(setting), t0))
			prob := problemOf(sum, bad)
			img, imaged := w.image(bad)
			switch setting {
			case rotation.OnPreFailureSkip:
				if imaged || prob.Outcome != steps.OutcomeRefused || !strings.Contains(prob.Reason, "pre script failed") || !sum.Failed {
					t.Fatalf("skip: imaged %v, problem %+v, failed %v", imaged, prob, sum.Failed)
				}
			case rotation.OnPreFailureCrashConsistent:
				if !imaged || tag(img.Tags, rotation.TagConsistency) != rotation.ConsistencyCrash ||
					prob.Outcome != steps.OutcomeCrashConsistent || !strings.Contains(prob.Reason, "/data is not a mount point") || sum.Failed {
					t.Fatalf("crash-consistent: imaged %v (%v), problem %+v, failed %v", imaged, img.Tags, prob, sum.Failed)
				}
			}
			if sum.Outcomes[steps.OutcomeOK] != 2 {
				t.Fatalf("the other instances: %+v", sum.Outcomes)
			}
			// The post script still ran where the pre script had started.
			if cmds := w.commandsOn(bad); len(cmds) != 2 || cmds[1].stage != "post" || cmds[1].inv.Status != "Success" {
				t.Fatalf("commands on %s: %+v", bad, cmds)
			}
			w.expectNothingFrozen(ids)
		})
	}
}

func TestScripts_HungPostTimesOutAndIsReported(t *testing.T) {
	w := newScriptsWorld(t)
	ids := w.instances(2, "appdb")
	hung := ids[0]
	// Newest script first: the pre script succeeds, the post script hangs.
	_ = w.sim.ScriptCommands(ec2sim.CommandScript{InstanceID: hung, Outcome: ec2sim.ScriptHang})
	_ = w.sim.ScriptCommands(ec2sim.CommandScript{InstanceID: hung, Outcome: ec2sim.ScriptSucceed, Count: 1})
	start := w.sim.Now()
	_, sum := w.run(w.scriptsRunner(), scheduled(appdb(rotation.OnPreFailureSkip), t0))
	prob := problemOf(sum, hung)
	if prob.Outcome != steps.OutcomeError || !strings.Contains(prob.Reason, "post script timed-out") || !strings.Contains(prob.Reason, "may still be frozen") || !sum.Failed {
		t.Fatalf("problem %+v, failed %v", prob, sum.Failed)
	}
	cmds := w.commandsOn(hung)
	// Cancelled by the step at its 60 s timeout, or ended by the agent at
	// the same executionTimeout, whichever the poll saw first; not left hanging.
	if len(cmds) != 2 || cmds[1].inv.Status != "Cancelled" && cmds[1].inv.StatusDetails != "ExecutionTimedOut" {
		t.Fatalf("the hung post script did not end at its timeout: %+v", cmds)
	}
	if d := cmds[1].inv.Ended.Sub(cmds[1].requested); d < 60*time.Second || d > 60*time.Second+time.Minute {
		t.Errorf("post cancelled after %s", d)
	}
	if _, ok := w.image(hung); !ok {
		t.Error("the image taken while frozen was not kept")
	}
	if w.sim.Now().Sub(start) > 30*time.Minute {
		t.Errorf("the rotation took %s of simulated time", w.sim.Now().Sub(start))
	}
}

func TestScripts_CrashAfterPreIsThawedByTheNextRun(t *testing.T) {
	w := newScriptsWorld(t)
	ids := w.instances(2, "appdb")
	p := appdb(rotation.OnPreFailureSkip)
	// A rotation stopped right after its pre scripts ran (StopExecution,
	// or the Lambda gone for good): the pre phase through the handler, and
	// nothing after it.
	day1 := t0.Add(-24 * time.Hour)
	batch := steps.Batch{Policy: p.WithDefaults(), Rotation: rotation.Rotation{ID: day1.Format(rot0Layout), Time: day1, Trigger: rotation.TriggerSchedule, Home: home}, InstanceIDs: ids}
	h := steps.NewScripts(w.clients.As("scripts"), steps.Env{Now: w.sim.Now})
	b, err := h.Handle(context.Background(), steps.ScriptsIn{Phase: steps.PhasePre, Batch: batch})
	for err == nil && b.Scripts.Pending > 0 {
		time.Sleep(20 * time.Millisecond)
		b, err = h.Handle(context.Background(), steps.ScriptsIn{Phase: steps.PhasePoll, Batch: b})
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if cmds := w.commandsOn(id); len(cmds) != 1 || cmds[0].inv.Status != "Success" {
			t.Fatalf("%s after the stopped rotation: %+v", id, cmds)
		}
	}
	res, sum := w.run(w.scriptsRunner(), scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != 2 {
		t.Fatalf("summary %+v", sum)
	}
	for _, id := range ids {
		cmds := w.commandsOn(id)
		// day 1's pre, the sweep's post for day 1, then day 2's pre and post.
		stages := []string{}
		for _, c := range cmds {
			stages = append(stages, c.stage)
		}
		if !slices.Equal(stages, []string{"pre", "post", "pre", "post"}) || !cmds[1].inv.Ended.Before(cmds[2].requested) {
			t.Errorf("%s: %v %+v; want the sweep's thaw to end before the new pre script", id, stages, cmds)
		}
	}
	w.expectNothingFrozen(ids)
}

func TestScripts_OfflineAndUnmanagedInstancesAreReported(t *testing.T) {
	w := newScriptsWorld(t)
	ids := w.instances(3, "appdb")
	offline, unmanaged := ids[0], ids[1]
	_ = w.sim.SetAgent(home, offline, ec2sim.AgentOffline)
	_ = w.sim.SetAgent(home, unmanaged, ec2sim.AgentUnmanaged)
	start := w.sim.Now()
	_, sum := w.run(w.scriptsRunner(), scheduled(appdb(rotation.OnPreFailureSkip), t0))
	for id, want := range map[string]string{offline: "SSM Agent is ConnectionLost", unmanaged: "not a managed node"} {
		if p := problemOf(sum, id); p.Outcome != steps.OutcomeRefused || !strings.Contains(p.Reason, want) {
			t.Errorf("%s: problem %+v, want refused because %q", id, p, want)
		}
		if cmds := w.commandsOn(id); len(cmds) != 0 {
			t.Errorf("%s: commands were sent: %+v", id, cmds)
		}
	}
	if sum.Outcomes[steps.OutcomeOK] != 1 {
		t.Fatalf("summary %+v", sum)
	}
	// Nothing waited for the offline agent's delivery timeout.
	if d := w.sim.Now().Sub(start); d > 20*time.Minute {
		t.Errorf("the batch took %s of simulated time", d)
	}
}

func TestScripts_WindowsVSSFreezesAndThaws(t *testing.T) {
	w := newScriptsWorld(t)
	var ids []string
	for range 2 {
		id, err := w.sim.RunInstance(home, ec2sim.InstanceSpec{Windows: true, Tags: map[string]string{"amirotate:policy": "winapp"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	p := policy("winapp")
	p.CopyTo, p.Publish = nil, rotation.Publish{}
	p.Scripts = &rotation.Scripts{Preset: rotation.PresetWindowsVSS, OnPreFailure: rotation.OnPreFailureCrashConsistent,
		Pre: &rotation.Script{TimeoutSeconds: rotation.MaxScriptTimeoutSeconds}} // see appdb
	res, sum := w.run(w.scriptsRunner(), scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != 2 {
		t.Fatalf("summary %+v", sum)
	}
	for _, c := range w.sim.Commands(home) {
		if c.Document != rotation.DocumentManageVssIO {
			t.Errorf("command %s with %s", c.CommandID, c.Document)
		}
	}
	w.expectNothingFrozen(ids)
	raw, _ := json.Marshal(w.sim.Commands(home))
	t.Logf("%s", raw)
}

// TestScripts_ThousandInstancesStayUnderThePayloadLimit: with scripts, a
// batch's state carries each instance's pre and post runs; 1,000 instances
// in batches of 100 stay far below Step Functions' 256 KiB, and the
// scripts add a few transitions per batch, not per instance.
func TestScripts_ThousandInstancesStayUnderThePayloadLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 instances")
	}
	const n = 1000
	w := newScriptsWorld(t)
	w.instances(n, "appdb")
	p := appdb(rotation.OnPreFailureSkip)
	p.BatchSize = 100
	res, sum := w.run(w.scriptsRunner(), scheduled(p, t0))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if sum.Outcomes[steps.OutcomeOK] != n {
		t.Fatalf("summary %+v", sum)
	}
	if res.MaxPayloadBytes >= payloadLimit {
		t.Fatalf("largest payload %d bytes (%s)", res.MaxPayloadBytes, res.MaxPayloadState)
	}
	perImage := float64(res.Transitions) / n
	t.Logf("scripts at %d instances: %d transitions (%.3f per image), largest payload %d bytes in %s, %d SSM commands",
		n, res.Transitions, perImage, res.MaxPayloadBytes, res.MaxPayloadState, len(w.sim.Commands(home)))
	if perImage > 1 {
		t.Errorf("%.2f state transitions per image, want at most 1", perImage)
	}
}

// TestScripts_PreStepCrashStillSendsThePost: the scripts function dies
// after sending the pre scripts, every time the state machine retries it;
// its Catch leads to the post script, which finds the pre scripts by their
// comment and thaws every instance.
func TestScripts_PreStepCrashStillSendsThePost(t *testing.T) {
	w := newScriptsWorld(t)
	ids := w.instances(2, "appdb")
	r := w.scriptsRunner()
	// The first call and both retries of PreScripts (Runtime.ExitError is
	// retried twice) crash after the handler ran.
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-scripts", Count: 3, AfterHandler: true})
	res, sum := w.run(r, scheduled(appdb(rotation.OnPreFailureSkip), t0))
	if res.Succeeded() || sum.Outcomes[steps.OutcomeError] != 2 {
		t.Fatalf("status %s, summary %+v", res.Status, sum)
	}
	for _, id := range ids {
		cmds := w.commandsOn(id)
		if len(cmds) != 2 || cmds[0].stage != "pre" || cmds[1].stage != "post" || cmds[1].inv.Status != "Success" {
			t.Errorf("%s: %+v; want one pre script (not sent again by the retries) and its post script", id, cmds)
		}
		if _, imaged := w.image(id); imaged {
			t.Errorf("%s was imaged although its batch failed before CreateImage", id)
		}
	}
	w.expectNothingFrozen(ids)
}
