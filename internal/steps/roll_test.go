package steps

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
)

const rollPolicyJSON = `"retention":{"keep":1},"publish":{"launchTemplates":true},` +
	`"roll":{"minHealthyPercentage":50,"instanceWarmupSeconds":60,"checkpointPercentages":[50,100],"checkpointDelaySeconds":120,"bakeTimeSeconds":60%s}`

// rollWorld has instance i-0000000a's earlier image in a tracked template,
// a group "web" on version groupVersion of it, a group "other" on an
// untracked template, and the rotation's new image published.
func rollWorld(t *testing.T, rollExtra, groupVersion string) (*rtWorld, Batch, string) {
	t.Helper()
	w := newRTWorld(t, strings.Replace(rollPolicyJSON, "%s", rollExtra, 1))
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web", []string{old}, 1, track("i-0000000a"))
	other := w.template(rtHome, "other", []string{old}, 1, nil)
	w.group(rtHome, "web", func(in *autoscaling.CreateAutoScalingGroupInput) {
		in.LaunchTemplate, in.MaxSize, in.DesiredCapacity = ltSpec(lt, groupVersion), aws.Int32(8), aws.Int32(4)
	})
	w.group(rtHome, "other", func(in *autoscaling.CreateAutoScalingGroupInput) {
		in.LaunchTemplate, in.DesiredCapacity = ltSpec(other, "1"), aws.Int32(2)
	})
	b := w.runPublish(w.batchOf(w.rotated("i-0000000a")))
	if pub := pubOf(b.Published, "i-0000000a", rtHome); pub.Error != "" || len(pub.LaunchTemplates) != 1 || pub.LaunchTemplates[0].Version != 2 {
		t.Fatalf("publish: %+v", pub)
	}
	return w, b, lt
}

// roll runs the roll step as the state machine does: again after each
// Wait while anything is rolling.
func (w *rtWorld) roll(b Batch) Batch {
	w.t.Helper()
	h := NewRoll(w.clients, Env{Now: w.clock.Now})
	for range 200 {
		out, err := h.Handle(w.ctx, b)
		if err != nil {
			w.t.Fatalf("roll: %v", err)
		}
		b = out
		if b.Rolling == 0 {
			return b
		}
		if b.WaitSeconds < 1 {
			w.t.Fatalf("rolling %d with wait %d", b.Rolling, b.WaitSeconds)
		}
		w.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
	}
	w.t.Fatalf("still rolling after 200 rounds: %+v", b.Rolls)
	return b
}

func (w *rtWorld) groupVersion(name string) string {
	w.t.Helper()
	out, err := w.clients.AutoScaling(rtHome).DescribeAutoScalingGroups(w.ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		w.t.Fatalf("group %s: %v", name, err)
	}
	return aws.ToString(out.AutoScalingGroups[0].LaunchTemplate.Version)
}

func (w *rtWorld) refreshes(group string) []asgtypes.InstanceRefresh {
	w.t.Helper()
	out, err := w.clients.AutoScaling(rtHome).DescribeInstanceRefreshes(w.ctx, &autoscaling.DescribeInstanceRefreshesInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		w.t.Fatal(err)
	}
	return out.InstanceRefreshes
}

func TestRoll_RefreshesTheGroupOntoTheNewVersion(t *testing.T) {
	w, b, lt := rollWorld(t, `,"autoRollback":true,"alarms":["web-5xx"]`, "1")
	w.sim.ResetStats()
	b = w.roll(b)
	st := w.sim.Stats().FirstAttempts().Calls[rtHome]
	if st["autoscaling:StartInstanceRefresh"] != 1 || st["autoscaling:DescribeAutoScalingGroups"] != 1 {
		t.Errorf("calls %v; want one StartInstanceRefresh and one group listing", st)
	}
	if len(b.Rolls) != 1 {
		t.Fatalf("rolls = %+v; want only the group on the moved template", b.Rolls)
	}
	r := b.Rolls[0]
	if r.Group != "web" || r.LaunchTemplateID != lt || r.Version != 2 || r.GroupVersion != "1" || !RollOK(r) || r.Percent != 100 || r.InstanceID != "i-0000000a" {
		t.Fatalf("roll = %+v", r)
	}
	if v := w.groupVersion("web"); v != "2" {
		t.Errorf("group web launches version %s; want the explicit new version 2", v)
	}
	if v := w.groupVersion("other"); v != "1" || len(w.refreshes("other")) != 0 {
		t.Errorf("group other (untracked template) was touched: version %s, refreshes %v", v, w.refreshes("other"))
	}
	irs := w.refreshes("web")
	p := irs[0].Preferences
	if len(irs) != 1 || aws.ToString(irs[0].DesiredConfiguration.LaunchTemplate.Version) != "2" || !aws.ToBool(p.SkipMatching) || !aws.ToBool(p.AutoRollback) ||
		aws.ToInt32(p.MinHealthyPercentage) != 50 || aws.ToInt32(p.InstanceWarmup) != 60 || aws.ToInt32(p.BakeTime) != 60 ||
		aws.ToInt32(p.CheckpointDelay) != 120 || len(p.CheckpointPercentages) != 2 || p.AlarmSpecification.Alarms[0] != "web-5xx" {
		t.Errorf("refresh as started: %+v, preferences %+v", irs, p)
	}
	if o, _, why := InstanceOutcome(b, "i-0000000a"); o != OutcomeOK {
		t.Errorf("outcome %s (%s); want ok", o, why)
	}
	if res := BatchResultOf(b); res.GroupsRolled != 1 {
		t.Errorf("groupsRolled = %d", res.GroupsRolled)
	}

	// A rerun of the rotation (a redriven execution) adopts the refresh it
	// finds onto the same version instead of starting another.
	b.Rolls, b.RollPolls = nil, 0
	b = w.roll(b)
	if len(b.Rolls) != 1 || !RollOK(b.Rolls[0]) || b.Rolls[0].RefreshID != r.RefreshID || len(w.refreshes("web")) != 1 {
		t.Errorf("rerun: rolls %+v, refreshes %d", b.Rolls, len(w.refreshes("web")))
	}
}

func TestRoll_ARollbackFailsTheInstanceWithTheReason(t *testing.T) {
	w, b, _ := rollWorld(t, `,"autoRollback":true,"alarms":["web-5xx"]`, "1")
	if err := w.sim.FailNextInstanceRefresh(rtHome, "web", 50, "alarm web-5xx went into ALARM"); err != nil {
		t.Fatal(err)
	}
	b = w.roll(b)
	r := b.Rolls[0]
	if r.Status != string(asgtypes.InstanceRefreshStatusRollbackSuccessful) || RollOK(r) {
		t.Fatalf("roll = %+v; want RollbackSuccessful", r)
	}
	if v := w.groupVersion("web"); v != "1" {
		t.Errorf("group launches %s after the rollback; want its previous version 1", v)
	}
	o, region, why := InstanceOutcome(b, "i-0000000a")
	if o != OutcomeError || region != rtHome || !strings.Contains(why, "RollbackSuccessful") || !strings.Contains(why, "alarm web-5xx went into ALARM") {
		t.Errorf("outcome %s in %s: %s", o, region, why)
	}
}

func TestRoll_AFailedRefreshFailsTheInstance(t *testing.T) {
	w, b, _ := rollWorld(t, ``, "$Default")
	if err := w.sim.FailNextInstanceRefresh(rtHome, "web", 25, "new instances failed their health checks"); err != nil {
		t.Fatal(err)
	}
	b = w.roll(b)
	if o, _, why := InstanceOutcome(b, "i-0000000a"); o != OutcomeError || !strings.Contains(why, "ended Failed: new instances failed their health checks") {
		t.Errorf("outcome %s: %s", o, why)
	}
}

func TestRoll_LeavesARunningRefreshAlone(t *testing.T) {
	w, b, _ := rollWorld(t, ``, "1")
	other, err := w.clients.AutoScaling(rtHome).StartInstanceRefresh(w.ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	w.sim.ResetStats()
	b = w.roll(b)
	r := b.Rolls[0]
	if r.Status != RollSkipped || !strings.Contains(r.Reason, *other.InstanceRefreshId) || !strings.Contains(r.Reason, "left alone") {
		t.Fatalf("roll = %+v; want skipped, naming the running refresh", r)
	}
	st := w.sim.Stats().FirstAttempts().Calls[rtHome]
	if st["autoscaling:CancelInstanceRefresh"] != 0 || st["autoscaling:StartInstanceRefresh"] != 0 {
		t.Errorf("calls %v; want neither a cancel nor a start", st)
	}
	if irs := w.refreshes("web"); len(irs) != 1 || !rollActive(string(irs[0].Status)) {
		t.Errorf("the running refresh: %+v", irs)
	}
	if o, _, why := InstanceOutcome(b, "i-0000000a"); o != OutcomeError || !strings.Contains(why, "roll.cancelRunning") {
		t.Errorf("outcome %s: %s; the group did not move, which the report must say", o, why)
	}
}

func TestRoll_CancelRunningReplacesTheRunningRefresh(t *testing.T) {
	w, b, _ := rollWorld(t, `,"cancelRunning":true`, "1")
	other, err := w.clients.AutoScaling(rtHome).StartInstanceRefresh(w.ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	b = w.roll(b)
	if r := b.Rolls[0]; !RollOK(r) || r.RefreshID == *other.InstanceRefreshId {
		t.Fatalf("roll = %+v", r)
	}
	irs := w.refreshes("web")
	if len(irs) != 2 || irs[1].Status != asgtypes.InstanceRefreshStatusCancelled || w.groupVersion("web") != "2" {
		t.Errorf("refreshes %+v, group version %s", irs, w.groupVersion("web"))
	}
}

func TestRoll_AutoRollbackOnADefaultVersionGroupIsRefusedWithTheFix(t *testing.T) {
	w, b, _ := rollWorld(t, `,"autoRollback":true`, "$Default")
	w.sim.ResetStats()
	b = w.roll(b)
	r := b.Rolls[0]
	if r.Status != RollError || !strings.Contains(r.Reason, "autoRollback needs a numbered version") {
		t.Fatalf("roll = %+v", r)
	}
	if n := w.sim.Stats().Calls[rtHome]["autoscaling:StartInstanceRefresh"]; n != 0 {
		t.Errorf("StartInstanceRefresh called %d times", n)
	}
}

// A dry run lists the groups a real run would refresh (reads only); a
// policy without a roll block does nothing at all.
func TestRoll_ADryRunListsTheGroupsOnly(t *testing.T) {
	w, b, lt := rollWorld(t, ``, "1")
	b.Policy.DryRun = true
	// A dry run's publish moves nothing: its templates carry no version.
	for i := range b.Published {
		for j := range b.Published[i].LaunchTemplates {
			b.Published[i].LaunchTemplates[j].Version = 0
		}
	}
	w.sim.ResetStats()
	b = w.roll(b)
	if len(b.Rolls) != 1 || b.Rolls[0].Group != "web" || b.Rolls[0].LaunchTemplateID != lt || b.Rolls[0].Status != RollPlanned {
		t.Errorf("dry run: rolls %+v, want group web planned", b.Rolls)
	}
	if st := w.sim.Stats().FirstAttempts().Calls[rtHome]; len(st) != 1 || st["autoscaling:DescribeAutoScalingGroups"] != 1 {
		t.Errorf("dry run made %v, want one DescribeAutoScalingGroups", st)
	}
	if o, _, why := InstanceOutcome(b, "i-0000000a"); o != OutcomePlanned {
		t.Errorf("dry run outcome %s (%s), want planned", o, why)
	}
	if res := BatchResultOf(b); res.GroupsRolled != 0 {
		t.Errorf("groupsRolled = %d in a dry run", res.GroupsRolled)
	}

	w, b, _ = rollWorld(t, ``, "1")
	b.Policy.Roll = nil
	w.sim.ResetStats()
	if b = w.roll(b); len(b.Rolls) != 0 || len(w.sim.Stats().Calls[rtHome]) != 0 {
		t.Errorf("no roll block: rolls %+v, calls %v", b.Rolls, w.sim.Stats().Calls)
	}
}

// A roll that cannot even read the group's refreshes (a role without
// autoscaling:DescribeInstanceRefreshes) fails at once with the reason,
// instead of waiting round after round.
func TestRoll_ARefusedReadFailsTheRollAtOnce(t *testing.T) {
	w, b, _ := rollWorld(t, ``, "1")
	w.inject(ec2sim.Fault{Action: "autoscaling:DescribeInstanceRefreshes", Code: "AccessDenied"})
	b = w.roll(b)
	if len(b.Rolls) != 1 || b.Rolls[0].Status != RollError || !strings.Contains(b.Rolls[0].Reason, "AccessDenied") {
		t.Fatalf("rolls %+v; want an error naming AccessDenied", b.Rolls)
	}
	if o, _, _ := InstanceOutcome(b, "i-0000000a"); o != OutcomeError {
		t.Errorf("outcome %s, want error", o)
	}
}

// While no refresh can be started (throttled, again and again), the roll
// times out from its first attempt.
func TestRoll_TimesOutWhenNoRefreshCanStart(t *testing.T) {
	w, b, _ := rollWorld(t, `,"timeoutMinutes":30`, "1")
	w.inject(ec2sim.Fault{Action: "autoscaling:StartInstanceRefresh", Code: "Throttling"})
	b = w.roll(b)
	if len(b.Rolls) != 1 || b.Rolls[0].Status != RollTimedOut || !strings.Contains(b.Rolls[0].Reason, "no instance refresh could be started in 30 minutes") {
		t.Fatalf("rolls %+v; want timed out from the first attempt", b.Rolls)
	}
}
