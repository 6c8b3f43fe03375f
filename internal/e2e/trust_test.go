package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// rebuild is the execution input EventBridge sends when instanceID's
// amirotate:rebuild tag changes at t.
func rebuild(p rotation.Policy, instanceID string, t time.Time) map[string]any {
	return map[string]any{"policy": p, "trigger": "tag-change", "event": map[string]any{
		"version": "0", "id": "e2e-" + t.Format(time.RFC3339), "detail-type": rotation.TagChangeDetailType, "source": rotation.TagChangeSource,
		"account": "123456789012", "time": t.UTC().Format(time.RFC3339), "region": home,
		"resources": []string{"arn:aws:ec2:" + home + ":123456789012:instance/" + instanceID},
		"detail": map[string]any{"changed-tag-keys": []string{rotation.TagRebuild}, "service": "ec2", "resource-type": "instance",
			"version": 3, "tags": map[string]string{"amirotate:policy": p.Name, rotation.TagRebuild: t.Format(time.RFC3339)}},
	}}
}

// Whoever can tag an instance can change its amirotate:rebuild tag at will:
// rebuilds inside the cooldown are refused, and however many rebuilds
// there are, the scheduled history stays (rebuilds have their own quota).
func TestTrust_RebuildsCannotEvictTheScheduledHistory(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(1, "web")
	p := policy("web")
	p.CopyTo = nil
	p.Retention = rotation.Retention{Keep: 2}
	base := t0.Add(-72 * time.Hour)
	for d := range 3 {
		if res, _ := w.run(w.runner(), scheduled(p, base.Add(time.Duration(d)*24*time.Hour))); res.Check() != nil {
			t.Fatalf("scheduled day %d: %v", d, res.Check())
		}
	}
	scheduledImages := len(w.images(home, "web")[ids[0]])

	// A rebuild 10 minutes after the last scheduled image: inside the
	// default one-hour cooldown, refused.
	last := base.Add(48 * time.Hour)
	res, sum := w.run(w.runner(), rebuild(p, ids[0], last.Add(10*time.Minute)))
	if res.Succeeded() || sum.Outcomes[steps.OutcomeRefused] != 1 || sum.ImagesCreated != 0 {
		t.Fatalf("a rebuild inside the cooldown: %s %+v; want refused, nothing made", res.Status, sum)
	}
	// Four rebuilds an hour apart: each makes an image, none evicts a
	// scheduled one; rebuild.keep (2) bounds the rebuilds kept.
	for i := 1; i <= 4; i++ {
		at := last.Add(time.Duration(i)*time.Hour + time.Minute)
		if res, sum := w.run(w.runner(), rebuild(p, ids[0], at)); res.Check() != nil || sum.ImagesCreated != 1 {
			t.Fatalf("rebuild %d: %v %+v", i, res.Check(), sum)
		}
	}
	var sched, rebuilt int
	for _, im := range w.images(home, "web")[ids[0]] {
		if tag(im.Tags, rotation.TagTrigger) == rotation.TriggerTagChange {
			rebuilt++
		} else {
			sched++
		}
	}
	if want := min(scheduledImages, p.Retention.Keep+1); sched < want || rebuilt != 2 {
		t.Errorf("%d scheduled and %d rebuild images remain; want the scheduled history (%d) and rebuild.keep (2) rebuilds", sched, rebuilt, want)
	}
}

// Whoever may start an execution supplies the whole input; handlers pinned
// to the deployed policy refuse a policy changed in it (here: shared with a
// foreign account, retention lowered) before anything is made.
func TestTrust_HandlersRefuseAPolicyTheDeploymentDoesNotRun(t *testing.T) {
	w := newWorld(t, ec2sim.Options{})
	ids := w.instances(2, "web")
	deployed := policy("web")
	tampered := deployed
	tampered.ShareWith = []string{"444455556666"}
	tampered.Retention = rotation.Retention{Keep: 1}
	pinned := func(o *localrun.Options) {
		o.Handlers = localrun.StepHandlers(w.clients, steps.Env{Policies: rotation.PinPolicies(deployed)})
	}
	w.sim.ResetStats()
	raw, _ := json.Marshal(scheduled(tampered, t0))
	res, err := w.runner(pinned).Run(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded() || !strings.Contains(res.Cause, "not one this deployment runs") {
		t.Fatalf("an execution with a policy the deployment does not run: %s %s", res.Status, res.Cause)
	}
	for region, calls := range w.sim.Stats().Calls {
		for _, a := range []string{"CreateImage", "ModifyImageAttribute", "DeregisterImage"} {
			if calls[a] > 0 {
				t.Errorf("%s called %d times in %s", a, calls[a], region)
			}
		}
	}
	if res, _ := w.run(w.runner(pinned), scheduled(deployed, t0)); res.Check() != nil {
		t.Fatalf("the deployed policy: %v", res.Check())
	}
	if n := len(w.images(home, "web", ids...)); n != len(ids) {
		t.Errorf("images for %d instances; want %d", n, len(ids))
	}
}
