package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/lambdahost"
)

const historyDefinition = `{
  "StartAt": "Start",
  "States": {
    "Start": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:amirotate-echo",
      "Retry": [{"ErrorEquals": ["Runtime.ExitError"], "MaxAttempts": 2}], "Next": "More?"},
    "More?": {"Type": "Choice", "Choices": [{"Variable": "$.wait", "BooleanEquals": true, "Next": "Pause"}], "Default": "Items"},
    "Pause": {"Type": "Wait", "Seconds": 60, "Next": "Items"},
    "Items": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1, "ResultPath": "$.results",
      "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:amirotate-echo", "End": true}}},
      "Next": "Risky"},
    "Risky": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:amirotate-fail",
      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Send"}], "Next": "Send"},
    "Send": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
      "Parameters": {"Entries": [{"EventBusName": "default", "Source": "test", "DetailType": "T", "Detail": {}}]},
      "ResultPath": null, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
}`

type brokenError struct{}

func (brokenError) Error() string { return "broken" }

func historyRun(t *testing.T, def string, in string, crashes int) *Result {
	t.Helper()
	zero := 0
	r, err := New(Options{
		Definition: []byte(def),
		Handlers: map[string]any{
			"echo": func(_ context.Context, v json.RawMessage) (json.RawMessage, error) { return v, nil },
			"fail": func(context.Context, json.RawMessage) (json.RawMessage, error) { return nil, brokenError{} },
		},
		WaitMs: &zero, RetryMs: &zero,
	})
	if err != nil {
		t.Fatal(err)
	}
	if crashes > 0 {
		r.Host.Inject(lambdahost.Fault{Function: "amirotate-echo", Count: crashes})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, json.RawMessage(in))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestHistory_CountsWhatStepFunctionsRecords runs a small execution whose
// history can be enumerated from the HistoryEvent reference: a Lambda Task
// that crashes once and is retried, a Choice, a Wait, a Map over two items
// with a Lambda Task each, a Lambda Task whose error a Catch takes, an
// events:putEvents integration and a Succeed state.
func TestHistory_CountsWhatStepFunctionsRecords(t *testing.T) {
	res := historyRun(t, historyDefinition, `{"wait": true, "items": [1, 2]}`, 1)
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	var want []string
	add := func(types ...string) { want = append(want, types...) }
	add("ExecutionStarted")
	// Start: the first attempt crashes, the retry succeeds.
	add("TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionFailed",
		"LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionSucceeded", "TaskStateExited")
	add("ChoiceStateEntered", "ChoiceStateExited")
	add("WaitStateEntered", "WaitStateExited")
	add("MapStateEntered", "MapStateStarted")
	for range 2 {
		add("MapIterationStarted", "TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted",
			"LambdaFunctionSucceeded", "TaskStateExited", "MapIterationSucceeded")
	}
	add("MapStateSucceeded", "MapStateExited")
	// Risky: failed and caught; the state still exits.
	add("TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionFailed", "TaskStateExited")
	// Send: a service integration, not a function ARN.
	add("TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskSucceeded", "TaskStateExited")
	add("SucceedStateEntered", "SucceedStateExited")
	add("ExecutionSucceeded")

	wantByType := map[string]int{}
	for _, w := range want {
		wantByType[w]++
	}
	if res.History.Events != len(want) || !maps.Equal(res.History.ByType, wantByType) {
		t.Fatalf("history: %d events %v\nwant %d events %v", res.History.Events, res.History.ByType, len(want), wantByType)
	}
	// Transitions (what Step Functions bills) count states entered: Start,
	// More?, Pause, Items, Work twice, Risky, Send, Done.
	if res.Transitions != 9 {
		t.Errorf("transitions %d, want 9", res.Transitions)
	}
}

// An execution that fails records no exit of the failing state: a Fail
// state enters and ExecutionFailed follows; an uncaught Task failure inside
// a Map fails the iteration, the Map and the execution.
func TestHistory_FailedExecutions(t *testing.T) {
	for _, tc := range []struct {
		name, def string
		want      map[string]int
	}{
		{"fail state", `{"StartAt": "No", "States": {"No": {"Type": "Fail", "Error": "E", "Cause": "c"}}}`,
			map[string]int{"ExecutionStarted": 1, "FailStateEntered": 1, "ExecutionFailed": 1}},
		{"uncaught in a map", `{"StartAt": "Items", "States": {"Items": {"Type": "Map", "ItemsPath": "$.items", "End": true,
			"ItemProcessor": {"StartAt": "Risky", "States": {
				"Risky": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:amirotate-fail", "End": true}}}}}}`,
			map[string]int{"ExecutionStarted": 1, "MapStateEntered": 1, "MapStateStarted": 1, "MapIterationStarted": 1,
				"TaskStateEntered": 1, "LambdaFunctionScheduled": 1, "LambdaFunctionStarted": 1, "LambdaFunctionFailed": 1,
				"MapIterationFailed": 1, "MapStateFailed": 1, "ExecutionFailed": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := historyRun(t, tc.def, `{"items": [1]}`, 0)
			if err := res.Check(); !errors.Is(err, ErrNotSucceeded) {
				t.Fatalf("check: %v", err)
			}
			if !maps.Equal(res.History.ByType, tc.want) {
				t.Fatalf("history %v\nwant %v", res.History.ByType, tc.want)
			}
		})
	}
}
