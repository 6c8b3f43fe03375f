package statemachine

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Mermaid draws a definition as a Mermaid flowchart: Tasks as boxes,
// Choices as diamonds, Waits as parallelograms, Succeed and Fail as
// stadiums, a Map as a subgraph; Catch transitions are dotted and labelled
// with the errors they catch. The README's picture is generated with it, so
// it cannot drift from the ASL.
func Mermaid(def []byte) (string, error) {
	m, err := Parse(def)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	fmt.Fprintf(&b, "  start((start)) --> %s\n", nodeID("", m.StartAt))
	drawMachine(&b, "", "  ", m)
	return b.String(), nil
}

func drawMachine(b *strings.Builder, scope, indent string, m *Machine) {
	names := orderedStates(m)
	for _, name := range names {
		s := m.States[name]
		id := nodeID(scope, name)
		if p := s.Processor(); p != nil {
			fmt.Fprintf(b, "%ssubgraph %s [%q]\n", indent, id, name+": "+s.Type+" (per batch)")
			fmt.Fprintf(b, "%s  direction TB\n", indent)
			drawMachine(b, scope+name+"/", indent+"  ", p)
			fmt.Fprintf(b, "%send\n", indent)
			continue
		}
		fmt.Fprintf(b, "%s%s\n", indent, shape(id, name, s.Type))
	}
	for _, name := range names {
		s := m.States[name]
		from := nodeID(scope, name)
		for _, t := range transitions(s) {
			to := nodeID(scope, t.to)
			switch {
			case t.kind == "Catch Next":
				fmt.Fprintf(b, "%s%s -.->|%q| %s\n", indent, from, t.label, to)
			case t.label != "":
				fmt.Fprintf(b, "%s%s -->|%q| %s\n", indent, from, t.label, to)
			default:
				fmt.Fprintf(b, "%s%s --> %s\n", indent, from, to)
			}
		}
	}
}

// orderedStates lists states in the order a reader follows them: the
// normal flow from StartAt first (Next before the branches), then the
// states only a Catch leads to, then any left over by name.
func orderedStates(m *Machine) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(string, bool)
	walk = func(n string, catches bool) {
		s, ok := m.States[n]
		if !ok || seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
		ts := transitions(s)
		sort.SliceStable(ts, func(i, j int) bool { return rank(ts[i].kind) < rank(ts[j].kind) })
		for _, t := range ts {
			if catches || t.kind != "Catch Next" {
				walk(t.to, catches)
			}
		}
	}
	walk(m.StartAt, false)
	for _, n := range slices.Clone(out) {
		for _, t := range transitions(m.States[n]) {
			walk(t.to, true)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.States)) {
		if !seen[n] {
			out = append(out, n)
		}
	}
	return out
}

func rank(kind string) int {
	switch kind {
	case "Next":
		return 0
	case "Choice Next":
		return 1
	case "Default":
		return 2
	}
	return 3
}

// nodeID makes a Mermaid-safe id, scoped so a Map's states cannot clash
// with the outer ones.
func nodeID(scope, name string) string {
	var b strings.Builder
	for _, r := range scope + name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	return b.String()
}

func shape(id, name, typ string) string {
	label := strings.ReplaceAll(name, `"`, "#quot;")
	switch typ {
	case "Choice":
		return fmt.Sprintf(`%s{"%s"}`, id, label)
	case "Wait":
		return fmt.Sprintf(`%s[/"%s"/]`, id, label)
	case "Succeed", "Fail":
		return fmt.Sprintf(`%s(["%s"])`, id, label)
	case "Pass":
		return fmt.Sprintf(`%s("%s")`, id, label)
	}
	return fmt.Sprintf(`%s["%s"]`, id, label)
}

var operators = map[string]string{
	"NumericGreaterThan": ">", "NumericGreaterThanEquals": ">=", "NumericLessThan": "<",
	"NumericLessThanEquals": "<=", "NumericEquals": "==", "BooleanEquals": "==", "StringEquals": "==",
}

// ruleLabel renders a simple Choice rule ("$.toCopy > 0"); compound rules
// are labelled by their operator.
func ruleLabel(rule map[string]json.RawMessage) string {
	var variable string
	if v, ok := rule["Variable"]; ok {
		_ = json.Unmarshal(v, &variable)
	}
	keys := slices.DeleteFunc(slices.Sorted(maps.Keys(rule)), func(k string) bool { return k == "Variable" })
	if variable == "" || len(keys) != 1 {
		return strings.Join(keys, " ")
	}
	op, ok := operators[keys[0]]
	if !ok {
		op = keys[0]
	}
	return fmt.Sprintf("%s %s %s", variable, op, strings.Trim(string(rule[keys[0]]), `"`))
}

func catchLabel(errs []string) string {
	return "catch " + strings.Join(errs, ", ")
}
