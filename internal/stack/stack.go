package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
	"github.com/amirotate/amirotate/statemachine"
)

// Options configure a Stack.
type Options struct {
	Template *Template
	// Sim is the local EC2; its clock drives the schedules and the
	// functions' clocks.
	Sim *ec2sim.Sim
	// Endpoint is the URL Sim is served at (the functions' AWS endpoint).
	Endpoint string
	// Triggers authorizes the schedules' and rules' roles to start the
	// state machine (nil: no IAM for them).
	Triggers *iamsim.RoleAuthorizer
	// WaitMs, when set, replaces every Wait state's duration.
	WaitMs *int
	// Log receives a line for each execution started, refused or ended.
	Log io.Writer
	// Stderr receives the local runner's standard error.
	Stderr io.Writer
}

// Stack is the local stack: an http.Handler for the whole endpoint (Step
// Functions, CloudFormation's DescribeStacks and GetTemplate, everything
// else to the simulator) and the schedules' loop (Run).
type Stack struct {
	opts      Options
	tmpl      *Template
	sim       *ec2sim.Sim
	functions map[string]any
	started   time.Time

	mu         sync.Mutex
	executions []*execution
	wg         sync.WaitGroup
	closed     bool
	seq        int
	logMu      sync.Mutex
}

type execution struct {
	arn, name, input string
	// via names what started it: a schedule's or rule's ARN, "" for a call.
	via         string
	status      string
	start, stop time.Time
	output      string
	errName     string
	cause       string
	events      []map[string]any
	cancel      context.CancelFunc
	done        chan struct{}
	// stopErr and stopCause are StopExecution's; stopRequested says it was
	// called while the execution ran.
	stopErr, stopCause string
	stopRequested      bool
}

// New builds the stack: every function of the template served in-process
// with the handler of its step, its role's identity (the simulator
// authorizes it as that role when it enforces the template) and the
// policies its environment pins, on the simulator's clock.
func New(opts Options) (*Stack, error) {
	t := opts.Template
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := statemachine.Validate(t.StateMachine.Definition); err != nil {
		return nil, fmt.Errorf("the template's state machine: %w", err)
	}
	clients := ec2x.NewClients(ec2sim.AWSConfig(opts.Endpoint, t.Region), ec2x.WithLocalIdentities())
	s := &Stack{opts: opts, tmpl: t, sim: opts.Sim, functions: map[string]any{}, started: opts.Sim.Now()}
	for id, f := range t.Functions {
		pins, err := rotation.ParsePins(f.Env[rotation.PinsEnv])
		if err != nil {
			return nil, fmt.Errorf("function %s: %s: %w", id, rotation.PinsEnv, err)
		}
		h := localrun.StepHandlers(clients, steps.Env{Now: opts.Sim.Now, Policies: pins})[f.Step]
		if h == nil {
			return nil, fmt.Errorf("function %s runs step %q, which this amirotate does not have", id, f.Step)
		}
		s.functions[id] = h
	}
	for _, sc := range t.Schedules {
		if _, err := parseWhen(sc.Expression, sc.TimeZone); err != nil {
			return nil, fmt.Errorf("schedule %s: %w", sc.LogicalID, err)
		}
	}
	opts.Sim.OnTagChange(s.tagChanged)
	return s, nil
}

// Template returns what the stack runs.
func (s *Stack) Template() *Template { return s.tmpl }

func (s *Stack) logf(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.opts.Log, "%s %s\n", s.sim.Now().Format("2006-01-02T15:04:05Z"), fmt.Sprintf(format, args...))
}

// ServeHTTP routes Step Functions and CloudFormation requests to the stack
// and everything else to the simulator.
func (s *Stack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions."):
		s.serveSFN(w, r)
	case signedFor(r) == "cloudformation":
		s.serveCloudFormation(w, r)
	default:
		s.sim.ServeHTTP(w, r)
	}
}

// signedFor is the service of a request's SigV4 credential scope.
func signedFor(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	i := strings.Index(auth, "Credential=")
	if i < 0 {
		return ""
	}
	cred, _, _ := strings.Cut(auth[i+len("Credential="):], ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

func (s *Stack) newName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// start begins an execution (via: the trigger's ARN, for the log).
func (s *Stack) start(name, input, via string) (*execution, *apiError) {
	arn := fmt.Sprintf("arn:aws:states:%s:%s:execution:%s:%s", s.tmpl.Region, s.tmpl.Account, s.tmpl.StateMachine.Name, name)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "ServiceUnavailable", message: "the local stack is stopping"}
	}
	for _, e := range s.executions {
		if e.name == name {
			// Same name and input while running: Step Functions answers
			// the running execution (idempotent start); otherwise refuses.
			same := e.input == input && e.status == "RUNNING"
			s.mu.Unlock()
			if same {
				return e, nil
			}
			return nil, errf("ExecutionAlreadyExists", "Execution Already Exists: '%s'", arn)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	now := s.sim.Now()
	e := &execution{arn: arn, name: name, input: input, via: via, status: "RUNNING", start: now, cancel: cancel, done: make(chan struct{})}
	e.add(now, "ExecutionStarted", "executionStartedEventDetails", map[string]any{
		"input": input, "inputDetails": map[string]bool{"truncated": false},
		"roleArn": fmt.Sprintf("arn:aws:iam::%s:role/%sRole", s.tmpl.Account, s.tmpl.StateMachine.LogicalID)})
	s.executions = append(s.executions, e)
	s.wg.Add(1)
	s.mu.Unlock()
	if via == "" {
		via = "StartExecution"
	}
	s.logf("execution %s started by %s", name, via)
	go s.run(ctx, e)
	return e, nil
}

// add appends a history event (s.mu held, or before e is shared).
func (e *execution) add(at time.Time, typ, detailsKey string, details map[string]any) {
	ev := map[string]any{"timestamp": epoch(at), "type": typ, "id": len(e.events) + 1, "previousEventId": len(e.events)}
	if detailsKey != "" {
		ev[detailsKey] = details
	}
	e.events = append(e.events, ev)
}

func (s *Stack) run(ctx context.Context, e *execution) {
	defer s.wg.Done()
	defer close(e.done)
	defer e.cancel()
	r, err := localrun.New(localrun.Options{
		Functions:    s.functions,
		Definition:   s.tmpl.StateMachine.Definition,
		Region:       s.tmpl.Region,
		Account:      s.tmpl.Account,
		WaitMs:       s.opts.WaitMs,
		DetailStates: stateNames(s.tmpl.StateMachine.Definition),
		Context: map[string]any{"Execution": map[string]any{"Id": e.arn, "Name": e.name,
			"RoleArn": fmt.Sprintf("arn:aws:iam::%s:role/%sRole", s.tmpl.Account, s.tmpl.StateMachine.LogicalID)},
			"StateMachine": map[string]any{"Id": s.tmpl.StateMachine.ARN, "Name": s.tmpl.StateMachine.Name}},
		// $$.Execution.StartTime (a manual rotation's time) on the
		// simulator's clock.
		ClockOffset: e.start.Sub(time.Now()),
		OnEvent:     func(ev localrun.Event) { s.record(e, ev) },
		Stderr:      s.opts.Stderr,
	})
	var res *localrun.Result
	if err == nil {
		res, err = r.Run(ctx, json.RawMessage(e.input))
	}
	s.mu.Lock()
	now := s.sim.Now()
	e.stop = now
	switch {
	case ctx.Err() != nil || e.stopRequested:
		// A stop that was answered wins over an end that came meanwhile:
		// StopExecution said it stopped.
		e.status, e.errName, e.cause = "ABORTED", e.stopErr, e.stopCause
		e.add(now, "ExecutionAborted", "executionAbortedEventDetails", map[string]any{"error": e.errName, "cause": e.cause})
	case err != nil:
		e.status, e.errName, e.cause = "FAILED", "States.Runtime", err.Error()
		e.add(now, "ExecutionFailed", "executionFailedEventDetails", map[string]any{"error": e.errName, "cause": e.cause})
	case res.Status == localrun.StatusSucceeded:
		e.status, e.output = res.Status, string(res.Output)
		e.add(now, "ExecutionSucceeded", "executionSucceededEventDetails", map[string]any{
			"output": e.output, "outputDetails": map[string]bool{"truncated": false}})
	default:
		e.status, e.errName, e.cause = res.Status, res.Error, res.Cause
		typ := map[string]string{localrun.StatusTimedOut: "ExecutionTimedOut", localrun.StatusAborted: "ExecutionAborted"}[res.Status]
		if typ == "" {
			typ = "ExecutionFailed"
		}
		e.add(now, typ, strings.ToLower(typ[:1])+typ[1:]+"EventDetails", map[string]any{"error": e.errName, "cause": e.cause})
	}
	status, cause := e.status, e.cause
	s.mu.Unlock()
	if cause != "" {
		s.logf("execution %s %s: %s", e.name, status, cause)
	} else {
		s.logf("execution %s %s", e.name, status)
	}
}

// record turns a runner event into Step Functions history events.
func (s *Stack) record(e *execution, ev localrun.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.sim.Now()
	switch ev.Type {
	case "StateEntered":
		e.add(now, ev.StateType+"StateEntered", "stateEnteredEventDetails", map[string]any{
			"name": ev.State, "input": rawString(ev.Input), "inputDetails": map[string]bool{"truncated": false}})
	case "StateExited":
		e.add(now, ev.StateType+"StateExited", "stateExitedEventDetails", map[string]any{
			"name": ev.State, "output": rawString(ev.Output), "outputDetails": map[string]bool{"truncated": false}})
	case "StateFailed":
		if ev.StateType == "Task" || ev.StateType == "" {
			e.add(now, "TaskFailed", "taskFailedEventDetails", map[string]any{
				"resourceType": "lambda", "resource": "invoke", "error": ev.Error, "cause": ev.Cause})
		}
	case "MapIterationStarted", "MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted":
		d := map[string]any{"name": ev.State}
		if ev.Index != nil {
			d["index"] = *ev.Index
		}
		e.add(now, ev.Type, strings.ToLower(ev.Type[:1])+ev.Type[1:]+"EventDetails", d)
	}
}

func rawString(b json.RawMessage) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}

// stateNames are every state of a definition, Map processors included: the
// history carries each one's input and output, as Step Functions' does.
func stateNames(def []byte) []string {
	m, err := statemachine.Parse(def)
	if err != nil {
		return nil
	}
	var out []string
	var walk func(*statemachine.Machine)
	walk = func(m *statemachine.Machine) {
		for name, st := range m.States {
			out = append(out, name)
			if p := st.Processor(); p != nil {
				walk(p)
			}
		}
	}
	walk(m)
	return out
}

// Run fires the schedules on the simulator's clock until ctx ends, then
// stops the executions still running.
func (s *Stack) Run(ctx context.Context) error {
	type pending struct {
		sc   Schedule
		w    *when
		next time.Time
	}
	start := s.sim.Now()
	var ps []*pending
	for _, sc := range s.tmpl.Schedules {
		w, err := parseWhen(sc.Expression, sc.TimeZone)
		if err != nil {
			return err
		}
		if !sc.Enabled {
			continue
		}
		ps = append(ps, &pending{sc: sc, w: w, next: w.first(start)})
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Close()
			return nil
		case <-tick.C:
		}
		now := s.sim.Now()
		for _, p := range ps {
			// A clock moved forward past several occurrences fires the
			// last one: the earlier ones would have run, one after the
			// other, as time passed, and each would have been superseded.
			var due []time.Time
			for !p.next.IsZero() && !p.next.After(now) {
				due = append(due, p.next)
				p.next = p.w.next(p.next, start)
			}
			if len(due) == 0 {
				continue
			}
			for _, at := range due[:len(due)-1] {
				s.logf("schedule %s: the occurrence of %s is skipped: the clock moved past it and past a later one", p.sc.LogicalID, at.Format(time.RFC3339))
			}
			s.fire(p.sc, due[len(due)-1])
		}
	}
}

// NextFires returns, per schedule, its next fire time after t.
func (s *Stack) NextFires(t time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, sc := range s.tmpl.Schedules {
		if w, err := parseWhen(sc.Expression, sc.TimeZone); err == nil && sc.Enabled {
			out[sc.LogicalID] = w.next(t, s.started)
			if t.Before(s.started) || t.Equal(s.started) {
				out[sc.LogicalID] = w.first(s.started)
			}
		}
	}
	return out
}

// fire starts the execution a schedule's occurrence sends: its input with
// the Scheduler's context attributes filled in
// (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-context-attributes.html).
// A flexible window is not drawn from: the local schedule fires at the
// window's start.
func (s *Stack) fire(sc Schedule, at time.Time) {
	id := s.newName()
	input := strings.NewReplacer(
		"<aws.scheduler.schedule-arn>", sc.ARN,
		"<aws.scheduler.scheduled-time>", at.UTC().Format(time.RFC3339),
		"<aws.scheduler.execution-id>", id,
		"<aws.scheduler.attempt-number>", "1",
	).Replace(sc.Input)
	if err := s.authorize(sc.RoleID); err != nil {
		s.logf("schedule %s at %s: not started: %v", sc.LogicalID, at.Format(time.RFC3339), err)
		return
	}
	if _, err := s.start(id, input, "schedule "+sc.LogicalID+" ("+at.Format(time.RFC3339)+")"); err != nil {
		s.logf("schedule %s: %v", sc.LogicalID, err)
	}
}

func (s *Stack) authorize(role string) error {
	if s.opts.Triggers == nil {
		return nil
	}
	return s.opts.Triggers.Allowed(role, "states:StartExecution", s.tmpl.StateMachine.ARN)
}

// tagChanged runs under the simulator's lock: it only hands the change on.
func (s *Stack) tagChanged(c ec2sim.TagChange) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		return
	}
	go func() {
		defer s.wg.Done()
		s.route(TagChangeEvent(c, s.tmpl.Account, s.newName()))
	}()
}

// TagChangeEvent is the EventBridge event of an instance's tag change, in
// the shape AWS documents
// (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging-eventbridge.html).
func TagChangeEvent(c ec2sim.TagChange, account, id string) []byte {
	tags := c.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	ev, _ := json.Marshal(map[string]any{
		"version":     "0",
		"id":          id,
		"detail-type": rotation.TagChangeDetailType,
		"source":      rotation.TagChangeSource,
		"account":     account,
		"time":        c.Time.UTC().Format(time.RFC3339),
		"region":      c.Region,
		"resources":   []string{fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", c.Region, account, c.InstanceID)},
		"detail": map[string]any{
			"changed-tag-keys": c.Changed,
			"service":          "ec2",
			"resource-type":    "instance",
			"version":          1,
			"tags":             tags,
		},
	})
	return ev
}

// route matches an event against every rule and starts an execution for
// each that matches, with the rule's input transformer applied.
func (s *Stack) route(event []byte) {
	for _, rule := range s.tmpl.Rules {
		if !rule.Enabled {
			continue
		}
		ok, err := rule.Pattern.Match(event)
		if err != nil || !ok {
			continue
		}
		input, err := transform(rule, event)
		if err != nil {
			s.logf("rule %s: input transformer: %v", rule.LogicalID, err)
			continue
		}
		if err := s.authorize(rule.RoleID); err != nil {
			s.logf("rule %s: not started: %v", rule.LogicalID, err)
			continue
		}
		if _, apiErr := s.start(s.newName(), input, "rule "+rule.LogicalID); apiErr != nil {
			s.logf("rule %s: %v", rule.LogicalID, apiErr)
		}
	}
}

// Close stops accepting events and aborts the executions still running.
func (s *Stack) Close() {
	s.mu.Lock()
	s.closed = true
	var running []*execution
	for _, e := range s.executions {
		if e.status == "RUNNING" {
			running = append(running, e)
		}
	}
	s.mu.Unlock()
	for _, e := range running {
		e.cancel()
	}
	s.wg.Wait()
}
