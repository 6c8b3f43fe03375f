package steps

import (
	"context"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
)

// A pre script that ran and failed, whose retry SendCommand then refused
// (the agent gone meanwhile), may have frozen part of the instance: the
// post phase finds the attempt that ran by its comment and sends the post
// script to it all the same.
func TestScripts_APreScriptThatRanGetsItsPostScriptEvenWhenItsRetryWasRefused(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	id := ids[0]
	p := testPolicy(t, `,"noReboot":true,"scripts":{"preset":"linux-fsfreeze","mountPoints":["/data"],"onPreFailure":"crash-consistent","pre":{"timeoutSeconds":60,"retries":1}}`)
	if err := e.sim.ScriptCommands(ec2sim.CommandScript{InstanceID: id, Outcome: ec2sim.ScriptFail, Count: 1}); err != nil {
		t.Fatal(err)
	}
	h := NewScripts(e.clients, Env{Now: e.now})
	phase := func(name string, b Batch) Batch {
		t.Helper()
		out, err := h.Handle(ctx, ScriptsIn{Phase: name, Batch: b})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	b := phase(PhasePre, e.batch(p, ids))
	first := b.Scripts.Instances[0].Pre.CommandID
	if first == "" {
		t.Fatalf("pre not sent: %+v", b.Scripts.Instances[0])
	}
	e.clock.Advance(10 * time.Second) // the first attempt fails
	if err := e.sim.SetAgent(testHome, id, ec2sim.AgentUnmanaged); err != nil {
		t.Fatal(err)
	}
	b = phase(PhasePoll, b)
	if pre := b.Scripts.Instances[0].Pre; pre.Status != ScriptUnreachable || pre.CommandID != "" {
		t.Fatalf("the refused retry: %+v", pre)
	}
	if err := e.sim.SetAgent(testHome, id, ec2sim.AgentOnline); err != nil {
		t.Fatal(err)
	}
	b = phase(PhasePost, b)
	in := b.Scripts.Instances[0]
	if in.Pre.CommandID != first || in.Post.CommandID == "" {
		t.Fatalf("post phase: pre %+v, post %+v; want the post script sent after attempt %s", in.Pre, in.Post, first)
	}
}
