package iamsim_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/iamsim"
)

var update = flag.Bool("update", false, "rewrite testdata/proofs.md")

// A mutation is one change to a role: a statement removed, or one condition
// made impossible to meet.
type mutation struct {
	step, policy, sid, what string
	apply                   func(doc map[string]any)
}

// platform statements are the Lambda runtime's (logs, traces): no step
// calls them, so the simulator cannot prove them.
func platform(st map[string]any) bool {
	for _, a := range asStrings(st["Action"]) {
		if !strings.HasPrefix(a, "logs:") && !strings.HasPrefix(a, "xray:") {
			return false
		}
	}
	return true
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = fmt.Sprint(e)
		}
		return out
	}
	return nil
}

func statements(doc map[string]any) []any {
	switch x := doc["Statement"].(type) {
	case []any:
		return x
	case map[string]any:
		return []any{x}
	}
	return nil
}

// mutations lists, for every API statement of every step's role, its
// removal and the breaking of each of its conditions: the values replaced
// by one no call carries (Null and Bool flipped).
func mutations(roles iamsim.Roles) []mutation {
	var out []mutation
	for _, step := range roles.Steps() {
		for _, pol := range roles[step].Policies {
			for si, s := range statements(pol.Document) {
				st := s.(map[string]any)
				if platform(st) {
					continue
				}
				sid := fmt.Sprint(st["Sid"])
				si := si
				out = append(out, mutation{step: step, policy: pol.Name, sid: sid, what: "removed", apply: func(doc map[string]any) {
					sts := statements(doc)
					doc["Statement"] = append(append([]any{}, sts[:si]...), sts[si+1:]...)
				}})
				cond, _ := st["Condition"].(map[string]any)
				for _, op := range sortedKeys(cond) {
					for _, key := range sortedKeys(cond[op].(map[string]any)) {
						op, key := op, key
						out = append(out, mutation{step: step, policy: pol.Name, sid: sid, what: "condition " + op + " " + key + " unmet",
							apply: func(doc map[string]any) {
								c := statements(doc)[si].(map[string]any)["Condition"].(map[string]any)[op].(map[string]any)
								switch {
								case op == "Null" || op == "Bool":
									if c[key] == "true" {
										c[key] = "false"
									} else {
										c[key] = "true"
									}
								default:
									c[key] = "amirotate-unmet-condition"
								}
							}})
					}
				}
			}
		}
	}
	return out
}

var resourceID = regexp.MustCompile(`\b(ami|snap|i|lt)-[0-9a-f]{8,17}\b`)

// elideIDs drops the generated part of resource ids.
func elideIDs(s string) string { return resourceID.ReplaceAllString(s, "$1-…") }

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// firstDenied replays the step's distinct recorded requests against roles
// and returns the first one denied.
func firstDenied(t *testing.T, ev *iamsim.Evaluator, set string, roles iamsim.Roles, step string, reqs []iamsim.Request) *ec2sim.AuthzRequest {
	t.Helper()
	seen := map[string]bool{}
	var mine []ec2sim.AuthzRequest
	for _, r := range reqs {
		b, _ := json.Marshal(r.AuthzRequest)
		if r.Step == step && !seen[string(b)] {
			seen[string(b)] = true
			mine = append(mine, r.AuthzRequest)
		}
	}
	// In a stable order (the steps call regions concurrently), so that the
	// first denial reported is always the same one.
	key := func(r ec2sim.AuthzRequest) string {
		b, _ := json.Marshal(r.Context)
		return r.Action + " " + elideIDs(r.Resource) + " " + r.Resource + " " + string(b)
	}
	sort.Slice(mine, func(i, j int) bool { return key(mine[i]) < key(mine[j]) })
	if err := ev.Load(set, roles); err != nil {
		t.Fatal(err)
	}
	principal := roles[step].ARN(ec2sim.AccountID)
	for len(mine) > 0 {
		n := min(len(mine), 100)
		ds, err := ev.Evaluate(set, step, principal, mine[:n])
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range ds {
			if d != iamsim.Allowed {
				r := mine[i]
				return &r
			}
		}
		mine = mine[n:]
	}
	return nil
}

// TestEnforcement_EveryStatementAndConditionIsNeeded proves the roles
// minimal and exercised: with any API statement removed, or any of its
// conditions unmet, some request the scenario makes is denied.
//
// It replays the requests the untouched run recorded instead of rerunning
// the scenario per change: a run is the same sequence of calls up to its
// first denial, so the rerun would meet the same denied request; replaying
// costs a fraction of a second per change, a rerun several seconds.
func TestEnforcement_EveryStatementAndConditionIsNeeded(t *testing.T) {
	roles, res := baseline(t)
	if len(res.denials) > 0 {
		t.Fatalf("the untouched template already denies: %v", res.denials[0].Request)
	}
	ev, err := iamsim.SharedEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for i, m := range mutations(roles) {
		changed := roles.Clone()
		for pi := range changed[m.step].Policies {
			if changed[m.step].Policies[pi].Name == m.policy {
				m.apply(changed[m.step].Policies[pi].Document)
			}
		}
		d := firstDenied(t, ev, fmt.Sprintf("mutation-%d", i), changed, m.step, res.requests)
		if d == nil {
			t.Errorf("%s: statement %s %s, and the scenario is still allowed everything: the statement (or condition) is not needed", m.step, m.sid, m.what)
			continue
		}
		proof := d.Action + " on `" + elideIDs(d.Resource) + "`"
		if d.Because != "" {
			proof += " (" + d.Because + ")"
		}
		table = append(table, fmt.Sprintf("| %s | %s | %s | %s |", m.step, m.sid, m.what, proof))
	}
	got := "| function | statement | change | first request the scenario is then denied |\n|---|---|---|---|\n" + strings.Join(table, "\n") + "\n"
	const path = "testdata/proofs.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is stale; run go test ./internal/iamsim -run TestEnforcement_EveryStatement -update\n--- got:\n%s", path, got)
	}
}

// TestEnforcement_RerunMeetsADeniedRequestTheReplayPredicts checks the
// replay's premise on one change: rerunning the scenario with the tag
// role's MarkLatestImages statement removed is denied, and its first denial
// is a request of a kind the untouched run made (ids differ between runs:
// same step, action, resource type and context keys) and the changed role
// denies.
func TestEnforcement_RerunMeetsADeniedRequestTheReplayPredicts(t *testing.T) {
	roles, res := baseline(t)
	var m *mutation
	for _, c := range mutations(roles) {
		if c.step == "tag" && c.sid == "MarkLatestImages" && c.what == "removed" {
			m = &c
		}
	}
	if m == nil {
		t.Fatal("the tag role has no MarkLatestImages statement")
	}
	changed := roles.Clone()
	for pi := range changed[m.step].Policies {
		if changed[m.step].Policies[pi].Name == m.policy {
			m.apply(changed[m.step].Policies[pi].Document)
		}
	}
	rerun := runScenario(t, changed)
	if len(rerun.denials) == 0 {
		t.Fatal("the rerun was allowed everything")
	}
	ev, err := iamsim.SharedEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	first := rerun.denials[0].Request
	if err := ev.Load("rerun-check", changed); err != nil {
		t.Fatal(err)
	}
	ds, err := ev.Evaluate("rerun-check", m.step, changed[m.step].ARN(ec2sim.AccountID), []ec2sim.AuthzRequest{first})
	if err != nil {
		t.Fatal(err)
	}
	kind := func(r ec2sim.AuthzRequest) string {
		keys := make([]string, 0, len(r.Context))
		for k := range r.Context {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return r.Action + " " + elideIDs(r.Resource) + " " + strings.Join(keys, ",")
	}
	found := false
	for _, r := range res.requests {
		found = found || (r.Step == m.step && kind(r.AuthzRequest) == kind(first))
	}
	if ds[0] == iamsim.Allowed || !found {
		t.Errorf("the rerun's first denial %s on %s (recorded in the untouched run: %v) is not one the replay denies", first.Action, first.Resource, found)
	}
}
