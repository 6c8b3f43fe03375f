package localrun

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
)

// MaxHistoryEvents is Step Functions' hard quota on one Standard
// execution's history: the execution fails when event 25,000 is not
// ExecutionSucceeded.
// https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
// https://docs.aws.amazon.com/step-functions/latest/dg/bp-history-limit.html
const MaxHistoryEvents = 25000

// History counts the events Step Functions records in a Standard
// execution's history (GetExecutionHistory), by HistoryEvent type
// (https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html),
// from the runner's events. aws-local-stepfunctions reports states entered,
// exited, failed, retried and caught; AWS records more per state:
//
//   - ExecutionStarted, then ExecutionSucceeded, ExecutionFailed,
//     ExecutionAborted or ExecutionTimedOut;
//   - every state: <Type>StateEntered and <Type>StateExited (a Fail state
//     only enters: ExecutionFailed follows);
//   - a Task, per attempt: Scheduled and Started, then Succeeded, Failed or
//     TimedOut, named LambdaFunction* when the Resource is a function ARN
//     and Task* for a service integration (lambda:invoke, events:putEvents);
//     a caught failure still exits the state (TaskStateExited);
//   - a Map: MapStateStarted after entering, MapIterationStarted and
//     MapIterationSucceeded (or Failed) per item, MapStateSucceeded (or
//     Failed) before exiting; Parallel likewise, without per-branch events.
//
// The order and event types of a retried and of a caught Lambda Task are
// those of executions recorded against AWS (LocalStack's validated
// snapshots, tests/aws/services/stepfunctions/v2/error_handling).
type History struct {
	Events int            `json:"events"`
	ByType map[string]int `json:"byType"`

	taskKind map[string]string // Task state name → "LambdaFunction" or "Task"
	caught   map[string]bool   // a state whose failure a Catch took, until it exits
}

// lambdaFunctionARN is a Task Resource that invokes a function directly
// (not through the arn:aws:states:::lambda:invoke integration).
var lambdaFunctionARN = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:`)

// taskKinds reads the Task states of a definition, Map and Parallel bodies
// included, to name their events: state name → "LambdaFunction" or "Task".
func taskKinds(definition []byte) (map[string]string, error) {
	var def machine
	if err := json.Unmarshal(definition, &def); err != nil {
		return nil, fmt.Errorf("reading the definition's states: %w", err)
	}
	kinds := map[string]string{}
	def.walk(func(name string, s state) {
		if s.Type == "Task" {
			kinds[name] = "Task"
			if lambdaFunctionARN.MatchString(s.Resource) {
				kinds[name] = "LambdaFunction"
			}
		}
	})
	return kinds, nil
}

func newHistory(taskKind map[string]string) *History {
	return &History{ByType: map[string]int{}, taskKind: taskKind, caught: map[string]bool{}}
}

type machine struct {
	States map[string]state `json:"States"`
}

type state struct {
	Type          string    `json:"Type"`
	Resource      string    `json:"Resource"`
	ItemProcessor *machine  `json:"ItemProcessor"`
	Iterator      *machine  `json:"Iterator"`
	Branches      []machine `json:"Branches"`
}

func (m machine) walk(fn func(string, state)) {
	for name, s := range m.States {
		fn(name, s)
		if s.ItemProcessor != nil {
			s.ItemProcessor.walk(fn)
		}
		if s.Iterator != nil {
			s.Iterator.walk(fn)
		}
		for _, b := range s.Branches {
			b.walk(fn)
		}
	}
}

func (h *History) record(types ...string) {
	for _, t := range types {
		h.ByType[t]++
		h.Events++
	}
}

// add counts the history events one runner event stands for.
func (h *History) add(ev Event) {
	// Iterations of a Map run concurrently: a state is one state per item.
	key := ev.State
	if ev.Index != nil {
		key += "#" + strconv.Itoa(*ev.Index)
	}
	switch ev.Type {
	case "ExecutionStarted", "ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted",
		"MapIterationStarted", "MapIterationSucceeded", "MapIterationFailed":
		h.record(ev.Type)
	case "ExecutionTimeout":
		h.record("ExecutionTimedOut")
	case "StateEntered":
		h.record(ev.StateType + "StateEntered")
		switch ev.StateType {
		case "Task":
			kind := h.taskKind[ev.State]
			h.record(kind+"Scheduled", kind+"Started")
		case "Map", "Parallel":
			h.record(ev.StateType + "StateStarted")
		}
	case "StateRetried":
		// The next attempt of a Task is scheduled and started again; the
		// state is not entered again.
		if ev.StateType == "Task" {
			kind := h.taskKind[ev.State]
			h.record(kind+"Scheduled", kind+"Started")
		}
	case "StateFailed":
		switch ev.StateType {
		case "Task":
			if ev.Error == "States.Timeout" {
				h.record(h.taskKind[ev.State] + "TimedOut")
			} else {
				h.record(h.taskKind[ev.State] + "Failed")
			}
		case "Map", "Parallel":
			h.record(ev.StateType + "StateFailed")
		}
	case "StateCaught":
		h.caught[key] = true
	case "StateExited":
		caught := h.caught[key]
		delete(h.caught, key)
		if !caught {
			switch ev.StateType {
			case "Task":
				h.record(h.taskKind[ev.State] + "Succeeded")
			case "Map", "Parallel":
				h.record(ev.StateType + "StateSucceeded")
			}
		}
		h.record(ev.StateType + "StateExited")
	}
}
