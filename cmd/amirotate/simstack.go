package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/stack"
)

// newLocalStack builds the local stack of `amirotate sim --stack`: its
// triggers' roles are authorized by the template's policies, its log goes
// to stdout.
func newLocalStack(t *stack.Template, sim *ec2sim.Sim, url string, c simConfig, stdout, stderr io.Writer) (*stack.Stack, error) {
	sm := t.StateMachine
	roles, err := iamsim.ParseRoles(t.Raw, t.Account, t.Region, t.TriggerRoles(), map[string]string{sm.LogicalID: sm.ARN, sm.LogicalID + ".Arn": sm.ARN})
	if err != nil {
		return nil, fmt.Errorf("--stack: the triggers' roles: %w", err)
	}
	triggers, err := iamsim.NewRoleAuthorizer(roles)
	if err != nil {
		return nil, err
	}
	opts := stack.Options{Template: t, Sim: sim, Endpoint: url, Triggers: triggers, Log: stdout, Stderr: stderr}
	if c.waitStates > 0 {
		ms := int(c.waitStates.Milliseconds())
		opts.WaitMs = &ms
	}
	return stack.New(opts)
}

func printStack(w io.Writer, st *stack.Stack, url string, now time.Time, c simConfig) {
	t := st.Template()
	fmt.Fprintf(w, `
Stack %s from %s:
  state machine  %s
`, t.StackName, c.stack, t.StateMachine.ARN)
	if t.StateMachine.Stale {
		fmt.Fprintf(w, "  WARNING: its definition is not this amirotate's statemachine/rotation.asl.json: the template was synthesized\n"+
			"  from another version, whose functions may not fit these handlers; run make synth\n")
	}
	steps := make([]string, 0, len(t.Functions))
	for _, f := range t.Functions {
		steps = append(steps, f.Step)
	}
	sort.Strings(steps)
	fmt.Fprintf(w, "  functions      %s (in-process, as their roles, on the simulator's clock)\n", strings.Join(steps, ", "))
	next := st.NextFires(now)
	for _, s := range t.Schedules {
		state := "next " + next[s.LogicalID].Format(time.RFC3339)
		if !s.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "  schedule       %s: %s %s (%s)\n", s.LogicalID, s.Expression, s.TimeZone, state)
	}
	for _, r := range t.Rules {
		fmt.Fprintf(w, "  rule           %s: Tag Change on Resource events of instances\n", r.LogicalID)
	}
	fmt.Fprintf(w, `
  export AWS_ENDPOINT_URL_SFN=%[1]s AWS_ENDPOINT_URL_CLOUDFORMATION=%[1]s
  amirotate status                                      # the executions, with their triggers
  curl -X POST %[1]s/_sim/clock -d '{"advance":"26h"}'   # move the clock past a schedule

`, url)
}
