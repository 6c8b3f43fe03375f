package statemachine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Machine is the part of an ASL definition the structural checks and the
// diagram read: states, their types and their transitions.
type Machine struct {
	Comment string           `json:"Comment,omitempty"`
	StartAt string           `json:"StartAt"`
	States  map[string]State `json:"States"`
}

// State is one ASL state, reduced to its structure.
type State struct {
	Type          string    `json:"Type"`
	Resource      string    `json:"Resource,omitempty"`
	Next          string    `json:"Next,omitempty"`
	End           bool      `json:"End,omitempty"`
	Default       string    `json:"Default,omitempty"`
	Choices       []Choice  `json:"Choices,omitempty"`
	Catch         []Catcher `json:"Catch,omitempty"`
	Retry         []Retrier `json:"Retry,omitempty"`
	ItemProcessor *Machine  `json:"ItemProcessor,omitempty"`
	Iterator      *Machine  `json:"Iterator,omitempty"`
	Branches      []Machine `json:"Branches,omitempty"`
	Error         string    `json:"Error,omitempty"`
}

// Choice is a top-level Choice rule; Rule keeps its comparison for labels.
type Choice struct {
	Next string
	Rule map[string]json.RawMessage
}

// UnmarshalJSON keeps the rule's fields besides Next.
func (c *Choice) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.Rule); err != nil {
		return err
	}
	if n, ok := c.Rule["Next"]; ok {
		if err := json.Unmarshal(n, &c.Next); err != nil {
			return fmt.Errorf("choice Next: %w", err)
		}
		delete(c.Rule, "Next")
	}
	return nil
}

// Catcher is one entry of a Catch field.
type Catcher struct {
	ErrorEquals []string `json:"ErrorEquals"`
	Next        string   `json:"Next"`
}

// Retrier is one entry of a Retry field.
type Retrier struct {
	ErrorEquals []string `json:"ErrorEquals"`
}

// Processor is the Map state's iteration machine, whichever field holds it.
func (s State) Processor() *Machine {
	if s.ItemProcessor != nil {
		return s.ItemProcessor
	}
	return s.Iterator
}

// Parse reads a definition's structure.
func Parse(def []byte) (*Machine, error) {
	var m Machine
	if err := json.Unmarshal(def, &m); err != nil {
		return nil, fmt.Errorf("state machine definition: %w", err)
	}
	return &m, nil
}

var knownTypes = map[string]bool{
	"Task": true, "Pass": true, "Wait": true, "Choice": true, "Map": true,
	"Parallel": true, "Succeed": true, "Fail": true,
}

// Validate checks a rendered definition's structure: it parses, no
// placeholder is left, every transition names a state of its own scope,
// every state can be reached from StartAt, and each state either moves on
// or ends. It is no full ASL validation (asl-validator, run by the tests,
// checks the schema and paths); it is the check a Go caller can always run.
func Validate(def []byte) error {
	if names := Placeholders(def); len(names) > 0 {
		return fmt.Errorf("state machine definition: unrendered placeholders %v", names)
	}
	m, err := Parse(def)
	if err != nil {
		return err
	}
	var errs []error
	checkMachine("", m, &errs)
	return errors.Join(errs...)
}

func checkMachine(scope string, m *Machine, errs *[]error) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s"+format, append([]any{scope}, args...)...))
	}
	if len(m.States) == 0 {
		fail("no States")
		return
	}
	if _, ok := m.States[m.StartAt]; !ok {
		fail("StartAt %q is not a state", m.StartAt)
	}
	names := slices.Sorted(maps.Keys(m.States))
	for _, name := range names {
		s := m.States[name]
		where := name + ": "
		if !knownTypes[s.Type] {
			fail("%sunknown Type %q", where, s.Type)
			continue
		}
		for _, t := range transitions(s) {
			if _, ok := m.States[t.to]; !ok {
				fail("%s%s %q is not a state of this scope", where, t.kind, t.to)
			}
		}
		switch s.Type {
		case "Choice":
			if len(s.Choices) == 0 {
				fail("%sChoice without Choices", where)
			}
			if s.Next != "" || s.End {
				fail("%sa Choice moves on only through Choices and Default", where)
			}
		case "Succeed", "Fail":
			if s.Next != "" || s.End {
				fail("%sa %s state is terminal: no Next or End", where, s.Type)
			}
		default:
			if (s.Next == "") == !s.End {
				fail("%sneeds exactly one of Next and End", where)
			}
		}
		if s.Type == "Task" && s.Resource == "" {
			fail("%sTask without Resource", where)
		}
		if s.Type == "Map" {
			p := s.Processor()
			if p == nil {
				fail("%sMap without ItemProcessor", where)
			} else {
				checkMachine(scope+name+"/", p, errs)
			}
		}
		for i := range s.Branches {
			checkMachine(fmt.Sprintf("%s%s/branch %d/", scope, name, i), &s.Branches[i], errs)
		}
	}
	reached := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		s, ok := m.States[n]
		if !ok || reached[n] {
			return
		}
		reached[n] = true
		for _, t := range transitions(s) {
			walk(t.to)
		}
	}
	walk(m.StartAt)
	for _, name := range names {
		if !reached[name] {
			fail("%s: unreachable from StartAt %q", name, m.StartAt)
		}
	}
}

type transition struct {
	kind, to string
	label    string
}

// transitions lists where a state can go: Next, each Choice, Default, each Catch.
func transitions(s State) []transition {
	var ts []transition
	if s.Next != "" {
		ts = append(ts, transition{kind: "Next", to: s.Next})
	}
	for _, c := range s.Choices {
		ts = append(ts, transition{kind: "Choice Next", to: c.Next, label: ruleLabel(c.Rule)})
	}
	if s.Default != "" {
		ts = append(ts, transition{kind: "Default", to: s.Default, label: "otherwise"})
	}
	for _, c := range s.Catch {
		ts = append(ts, transition{kind: "Catch Next", to: c.Next, label: catchLabel(c.ErrorEquals)})
	}
	return ts
}
