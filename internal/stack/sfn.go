package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The Step Functions API (JSON 1.0, X-Amz-Target AWSStepFunctions.<Action>)
// for the template's state machine, as
// https://docs.aws.amazon.com/step-functions/latest/apireference/ documents
// its actions, shapes and errors.

type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

// epoch is a timestamp as the JSON protocols send it: seconds since the
// epoch, with fractions.
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', 3, 64)), nil
}

func (s *Stack) serveSFN(w http.ResponseWriter, r *http.Request) {
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
	var body map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeSFN(w, nil, errf("SerializationException", "the request body is not a JSON object: %v", err))
		return
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(body[k], &v)
		return v
	}
	num := func(k string) int {
		var v int
		_ = json.Unmarshal(body[k], &v)
		return v
	}
	var out any
	var err *apiError
	switch action {
	case "StartExecution":
		out, err = s.startExecution(r.Context(), str("stateMachineArn"), str("name"), str("input"), "")
	case "DescribeExecution":
		out, err = s.describeExecution(str("executionArn"))
	case "ListExecutions":
		out, err = s.listExecutions(str("stateMachineArn"), str("statusFilter"), num("maxResults"), str("nextToken"))
	case "GetExecutionHistory":
		var reverse bool
		_ = json.Unmarshal(body["reverseOrder"], &reverse)
		include := true
		if raw, ok := body["includeExecutionData"]; ok {
			_ = json.Unmarshal(raw, &include)
		}
		out, err = s.getExecutionHistory(str("executionArn"), num("maxResults"), str("nextToken"), reverse, include)
	case "StopExecution":
		out, err = s.stopExecution(str("executionArn"), str("error"), str("cause"))
	case "ListStateMachines":
		sm := s.tmpl.StateMachine
		out = map[string]any{"stateMachines": []any{map[string]any{
			"stateMachineArn": sm.ARN, "name": sm.Name, "type": "STANDARD", "creationDate": epoch(s.started)}}}
	case "DescribeStateMachine":
		if arn := str("stateMachineArn"); arn != s.tmpl.StateMachine.ARN {
			err = errf("StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", arn)
			break
		}
		sm := s.tmpl.StateMachine
		out = map[string]any{"stateMachineArn": sm.ARN, "name": sm.Name, "status": "ACTIVE", "type": "STANDARD",
			"definition": string(sm.Definition), "creationDate": epoch(s.started),
			"roleArn": fmt.Sprintf("arn:aws:iam::%s:role/%s", s.tmpl.Account, sm.LogicalID+"Role")}
	default:
		err = errf("UnknownOperationException", "the local stack does not implement %s", action)
	}
	writeSFN(w, out, err)
}

func writeSFN(w http.ResponseWriter, out any, err *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if err != nil {
		w.Header().Set("X-Amzn-ErrorType", err.code)
		w.WriteHeader(err.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": err.code, "message": err.message})
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

// Execution names: 1-80 characters, no whitespace, brackets, wildcards,
// special or control characters (StartExecution's name parameter).
var badName = regexp.MustCompile(`[\s<>{}\[\]?*"#%\\^|~` + "`" + `$&,;:/\x00-\x1f\x7f-\x9f]`)

func (s *Stack) startExecution(ctx context.Context, smARN, name, input, via string) (any, *apiError) {
	if smARN == "" {
		return nil, errf("ValidationException", "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: Member must not be null")
	}
	if !strings.HasPrefix(smARN, "arn:aws:states:") {
		return nil, errf("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", smARN)
	}
	if smARN != s.tmpl.StateMachine.ARN {
		return nil, errf("StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", smARN)
	}
	if input == "" {
		input = "{}"
	}
	if len(input) > 256*1024 {
		return nil, errf("ValidationException", "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to 262144")
	}
	if !json.Valid([]byte(input)) {
		return nil, errf("InvalidExecutionInput", "Invalid State Machine Execution Input: 'the input is not valid JSON'")
	}
	if name == "" {
		name = s.newName()
	}
	if len(name) > 80 || badName.MatchString(name) {
		return nil, errf("InvalidName", "Invalid Name: '%s'", name)
	}
	e, apiErr := s.start(name, input, via)
	if apiErr != nil {
		return nil, apiErr
	}
	return map[string]any{"executionArn": e.arn, "startDate": epoch(e.start)}, nil
}

func (s *Stack) execution(arn string) (*execution, *apiError) {
	if !strings.HasPrefix(arn, "arn:aws:states:") || !strings.Contains(arn, ":execution:") {
		return nil, errf("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", arn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.executions {
		if e.arn == arn {
			return e, nil
		}
	}
	return nil, errf("ExecutionDoesNotExist", "Execution Does Not Exist: '%s'", arn)
}

func (s *Stack) describeExecution(arn string) (any, *apiError) {
	e, err := s.execution(arn)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]any{"executionArn": e.arn, "stateMachineArn": s.tmpl.StateMachine.ARN, "name": e.name,
		"status": e.status, "startDate": epoch(e.start), "input": e.input,
		"inputDetails": map[string]bool{"included": true}}
	if !e.stop.IsZero() {
		out["stopDate"] = epoch(e.stop)
	}
	if e.status == "SUCCEEDED" {
		out["output"] = e.output
		out["outputDetails"] = map[string]bool{"included": true}
	}
	if e.errName != "" || e.cause != "" {
		out["error"], out["cause"] = e.errName, e.cause
	}
	return out, nil
}

// listExecutions lists newest first. The token is the position in the
// order of starts (oldest 0) of the next execution to list: executions
// started meanwhile, or whose status changed, neither repeat nor skip one.
func (s *Stack) listExecutions(smARN, status string, max int, token string) (any, *apiError) {
	if !strings.HasPrefix(smARN, "arn:aws:states:") || !strings.Contains(smARN, ":stateMachine:") {
		return nil, errf("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: %s'", smARN)
	}
	if smARN != s.tmpl.StateMachine.ARN {
		return nil, errf("StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", smARN)
	}
	switch status {
	case "", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE":
	default:
		return nil, errf("ValidationException", "1 validation error detected: Value '%s' at 'statusFilter' failed to satisfy constraint: "+
			"Member must satisfy enum value set: [SUCCEEDED, TIMED_OUT, PENDING_REDRIVE, ABORTED, FAILED, RUNNING]", status)
	}
	switch {
	case max < 0 || max > 1000:
		return nil, errf("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: "+
			"Member must have value less than or equal to 1000", max)
	case max == 0:
		max = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := len(s.executions) - 1
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n >= len(s.executions) {
			return nil, errf("InvalidToken", "Invalid Token: '%s'", token)
		}
		next = n
	}
	items := []map[string]any{}
	for ; next >= 0 && len(items) < max; next-- {
		e := s.executions[next]
		if status != "" && e.status != status {
			continue
		}
		item := map[string]any{"executionArn": e.arn, "stateMachineArn": s.tmpl.StateMachine.ARN,
			"name": e.name, "status": e.status, "startDate": epoch(e.start)}
		if !e.stop.IsZero() {
			item["stopDate"] = epoch(e.stop)
		}
		items = append(items, item)
	}
	out := map[string]any{"executions": items}
	for ; next >= 0; next-- { // a token only when something is left to list
		if status == "" || s.executions[next].status == status {
			out["nextToken"] = strconv.Itoa(next)
			break
		}
	}
	return out, nil
}

// getExecutionHistory pages the events in order, or newest first. The
// token is the position (oldest 0) of the next event to list: events
// added while a running execution is paged neither repeat nor shift.
func (s *Stack) getExecutionHistory(arn string, max int, token string, reverse, include bool) (any, *apiError) {
	e, err := s.execution(arn)
	if err != nil {
		return nil, err
	}
	switch {
	case max < 0 || max > 1000:
		return nil, errf("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: "+
			"Member must have value less than or equal to 1000", max)
	case max == 0:
		max = 100
	}
	s.mu.Lock()
	events := append([]map[string]any(nil), e.events...)
	s.mu.Unlock()
	next, step := 0, 1
	if reverse {
		next, step = len(events)-1, -1
	}
	if token != "" {
		n, convErr := strconv.Atoi(token)
		if convErr != nil || n < 0 || n >= len(events) {
			return nil, errf("InvalidToken", "Invalid Token: '%s'", token)
		}
		next = n
	}
	page := []map[string]any{}
	for ; next >= 0 && next < len(events) && len(page) < max; next += step {
		ev := events[next]
		if !include {
			ev = withoutData(ev)
		}
		page = append(page, ev)
	}
	out := map[string]any{"events": page}
	if next >= 0 && next < len(events) {
		out["nextToken"] = strconv.Itoa(next)
	}
	return out, nil
}

// withoutData drops inputs and outputs (includeExecutionData false).
func withoutData(ev map[string]any) map[string]any {
	out := make(map[string]any, len(ev))
	for k, v := range ev {
		if d, ok := v.(map[string]any); ok && strings.HasSuffix(k, "EventDetails") {
			c := map[string]any{}
			for dk, dv := range d {
				if dk != "input" && dk != "output" {
					c[dk] = dv
				}
			}
			v = c
		}
		out[k] = v
	}
	return out
}

func (s *Stack) stopExecution(arn, errName, cause string) (any, *apiError) {
	e, err := s.execution(arn)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	running := e.status == "RUNNING"
	if running {
		e.stopErr, e.stopCause, e.stopRequested = errName, cause, true
	}
	s.mu.Unlock()
	if !running {
		return nil, errf("ValidationException", "Execution Already Finished: '%s'", arn)
	}
	e.cancel()
	<-e.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"stopDate": epoch(e.stop)}, nil
}
