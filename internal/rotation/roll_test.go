package rotation

import (
	"strings"
	"testing"
)

func TestDecodePolicy_Roll(t *testing.T) {
	p, err := DecodePolicy([]byte(`{"name":"web","retention":{"keep":2},"publish":{"launchTemplates":true},
		"roll":{"minHealthyPercentage":50,"instanceWarmupSeconds":120,"checkpointPercentages":[50,100],"checkpointDelaySeconds":600,
		        "bakeTimeSeconds":300,"skipMatching":false,"autoRollback":true,"alarms":["web-5xx"],"cancelRunning":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Roll
	if r == nil || *r.MinHealthyPercentage != 50 || *r.InstanceWarmupSeconds != 120 || len(r.CheckpointPercentages) != 2 ||
		*r.CheckpointDelaySeconds != 600 || r.BakeTimeSeconds != 300 || r.SkipsMatching() || !r.AutoRollback || r.Alarms[0] != "web-5xx" ||
		!r.CancelRunning || r.TimeoutMinutes != DefaultRollTimeoutMinutes {
		t.Fatalf("roll = %+v", r)
	}
	p, err = DecodePolicy([]byte(`{"name":"web","retention":{"keep":2},"publish":{"launchTemplates":true},"roll":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Roll.SkipsMatching() || p.Roll.MinHealthyPercentage != nil || p.Roll.AutoRollback || p.Roll.CancelRunning {
		t.Fatalf("defaults: %+v", p.Roll)
	}
	if p, _ := DecodePolicy([]byte(`{"name":"web","retention":{"keep":2}}`)); p.Roll != nil {
		t.Fatalf("no roll block: roll = %+v", p.Roll)
	}
}

func TestDecodePolicy_RollProblems(t *testing.T) {
	_, err := DecodePolicy([]byte(`{"name":"web","retention":{"keep":2},
		"roll":{"minHealthyPercentage":101,"instanceWarmupSeconds":-1,"checkpointPercentages":[50,20,101],"checkpointDelaySeconds":172801,
		        "bakeTimeSeconds":-5,"alarms":["a","a",""],"timeoutMinutes":5000}}`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"policy.roll: rolls groups onto the launch template versions publish makes; set publish.launchTemplates: true",
		"policy.roll.minHealthyPercentage: is 101",
		"policy.roll.instanceWarmupSeconds: is -1",
		"policy.roll.checkpointPercentages[1]: is 20 after 50",
		"policy.roll.checkpointPercentages[2]: is 101",
		"policy.roll.checkpointDelaySeconds: is 172801",
		"policy.roll.bakeTimeSeconds: is -5",
		"policy.roll.alarms: take effect only with autoRollback",
		`policy.roll.alarms[1]: "a" is listed twice`,
		"policy.roll.alarms[2]: is empty",
		"policy.roll.timeoutMinutes: is 5000",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
	_, err = DecodePolicy([]byte(`{"name":"web","retention":{"keep":2},"publish":{"launchTemplates":true},"roll":{"checkpointDelaySeconds":60,"minHealthy":5}}`))
	if err == nil || !strings.Contains(err.Error(), "policy.roll.minHealthy: unknown field") {
		t.Fatalf("unknown field: %v", err)
	}
	_, err = DecodePolicy([]byte(`{"name":"web","retention":{"keep":2},"publish":{"launchTemplates":true},"roll":{"checkpointDelaySeconds":60}}`))
	if err == nil || !strings.Contains(err.Error(), "policy.roll.checkpointDelaySeconds: is set without checkpointPercentages") {
		t.Fatalf("delay without checkpoints: %v", err)
	}
}
