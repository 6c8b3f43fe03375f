// Package localrun executes the rotation state machine on this machine: the
// rendered ASL runs in aws-local-stepfunctions (node statemachine/local/run.mjs)
// and its Lambda Tasks reach the Go handlers through lambdahost. Whatever
// the handlers' AWS configuration points at (a real account, the simulator)
// is what the rotation changes; nothing else is deployed or needed.
package localrun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/amirotate/amirotate/internal/checkout"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/statemachine"
)

// Statuses of an execution, as Step Functions names them.
const (
	StatusSucceeded = "SUCCEEDED"
	StatusFailed    = "FAILED"
	StatusTimedOut  = "TIMED_OUT"
	StatusAborted   = "ABORTED"
)

// Options configure a Runner.
type Options struct {
	// Handlers by step name (discover, snapshot, ...): anything
	// lambda.NewHandler accepts. Each is served as function
	// statemachine.FunctionNamePrefix+name.
	Handlers map[string]any
	// Functions are served under exactly these names (a deployed
	// template's functions, which its Definition names by ARN).
	Functions map[string]any
	// Context is the execution's Context Object (default: its input and
	// the wall clock's start time), e.g. {"Execution": {"Id": ...,
	// "StartTime": ...}} on a simulated clock.
	Context map[string]any
	// ClockOffset moves the execution's clock ($$.Execution.StartTime, the
	// event times) this far ahead of the wall clock: a simulated clock.
	ClockOffset time.Duration
	// Region and Account of the local function ARNs (default us-east-1 and
	// 000000000000); the Lambda client in node signs for Region.
	Region, Account string
	// Definition replaces the rendered rotation definition (tests).
	Definition []byte
	// WaitMs, when set, replaces every Wait state's duration (milliseconds);
	// WaitTimeOverrides does it per state.
	WaitMs            *int
	WaitTimeOverrides map[string]int
	// RetryMs, when set, replaces every Retry interval (milliseconds);
	// RetryIntervalOverrides does it per state.
	RetryMs                *int
	RetryIntervalOverrides map[string]int
	// DetailStates are the states whose full input and output the result
	// keeps (default BatchReport and Report).
	DetailStates []string
	// OnEvent sees every event as it happens (live progress). It runs on
	// the reading goroutine: keep it quick.
	OnEvent func(Event)
	// RunnerDir is the statemachine/local directory (default: found, see Locate).
	RunnerDir string
	// Node is the node binary (default: the checkout's, see checkout.Node).
	Node string
	// Stderr receives node's standard error (default: kept, and quoted in
	// the error when the runner itself fails).
	Stderr io.Writer
}

// Event is one line of the runner's output: an execution, state or Map
// iteration event, a PutEvents entry set, or the final Result.
type Event struct {
	Type        string          `json:"type"`
	TS          int64           `json:"ts,omitempty"`
	Index       *int            `json:"index,omitempty"` // Map iteration
	State       string          `json:"state,omitempty"`
	StateType   string          `json:"stateType,omitempty"`
	InputBytes  int             `json:"inputBytes,omitempty"`
	OutputBytes int             `json:"outputBytes,omitempty"`
	Input       json.RawMessage `json:"input,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	Progress    *Progress       `json:"progress,omitempty"`
	Attempt     int             `json:"attempt,omitempty"`
	Next        string          `json:"next,omitempty"` // a Catch's target
	Error       string          `json:"error,omitempty"`
	Cause       string          `json:"cause,omitempty"`
	Entries     []PutEvent      `json:"entries,omitempty"`
	Status      string          `json:"status,omitempty"`
}

// Progress is what a state's output says about a batch's images.
type Progress struct {
	Counts      map[string]int `json:"counts,omitempty"`
	Pending     int            `json:"pending"`
	ToCopy      int            `json:"toCopy"`
	WaitSeconds int            `json:"waitSeconds"`
	Polls       int            `json:"polls"`
}

// PutEvent is an EventBridge entry the PublishEvent state would send.
type PutEvent struct {
	EventBusName string          `json:"EventBusName"`
	Source       string          `json:"Source"`
	DetailType   string          `json:"DetailType"`
	Detail       json.RawMessage `json:"Detail"`
}

// Result is one finished execution.
type Result struct {
	Status string          `json:"status"`
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
	Cause  string          `json:"cause,omitempty"`

	// Transitions counts StateEntered events, as Step Functions bills them
	// (retries excluded).
	Transitions   int `json:"transitions"`
	MapIterations int `json:"mapIterations"`
	Retries       int `json:"retries"`
	Caught        int `json:"caught"`
	// MaxPayloadBytes is the largest input or output of any state (Step
	// Functions refuses anything above 262144), and MaxPayloadState names it.
	MaxPayloadBytes int    `json:"maxPayloadBytes"`
	MaxPayloadState string `json:"maxPayloadState"`
	// StatesEntered counts entries per state name.
	StatesEntered map[string]int `json:"statesEntered"`
	// History is what Step Functions would record in the execution's
	// history, whose size it caps at MaxHistoryEvents.
	History *History `json:"history"`

	// Details: per detail state, the inputs and outputs it had, in order of
	// exit (BatchReport inputs are each batch's final Batch).
	DetailInputs  map[string][]json.RawMessage `json:"-"`
	DetailOutputs map[string][]json.RawMessage `json:"-"`
	// Events are the EventBridge entries the execution published.
	Events []PutEvent `json:"events,omitempty"`

	Lambda   lambdahost.Stats `json:"lambda"`
	Duration time.Duration    `json:"duration"`
}

// Succeeded tells whether the execution ended in success.
func (r *Result) Succeeded() bool { return r.Status == StatusSucceeded }

// Runner runs executions against one set of handlers.
type Runner struct {
	opts Options
	// Host serves the handlers; tests inject faults through it.
	Host     *lambdahost.Host
	def      []byte
	taskKind map[string]string // see History
	dir      string
}

// New prepares a runner: it renders the definition, finds the node runner
// and checks that its packages are installed.
func New(opts Options) (*Runner, error) {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Account == "" {
		opts.Account = "000000000000"
	}
	if opts.Node == "" {
		opts.Node = checkout.Node()
	}
	if len(opts.DetailStates) == 0 {
		opts.DetailStates = []string{"BatchReport", "Report"}
	}
	def := opts.Definition
	if def == nil {
		var err error
		if def, err = statemachine.Render(statemachine.LocalARNs(opts.Region, opts.Account)); err != nil {
			return nil, err
		}
	}
	if err := statemachine.Validate(def); err != nil {
		return nil, err
	}
	kinds, err := taskKinds(def)
	if err != nil {
		return nil, err
	}
	dir := opts.RunnerDir
	if dir == "" {
		var err error
		if dir, err = Locate(); err != nil {
			return nil, err
		}
	}
	if err := checkInstalled(dir); err != nil {
		return nil, err
	}
	if opts.Definition == nil {
		var missing []string
		for _, f := range ec2x.Steps {
			if opts.Handlers[f] == nil {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("no handler for step(s) %s", strings.Join(missing, ", "))
		}
	}
	handlers := make(map[string]any, len(opts.Handlers))
	for name, h := range opts.Handlers {
		handlers[statemachine.FunctionNamePrefix+name] = h
	}
	for name, h := range opts.Functions {
		handlers[name] = h
	}
	return &Runner{opts: opts, Host: lambdahost.New(handlers), def: def, taskKind: kinds, dir: dir}, nil
}

// Locate finds statemachine/local in the checkout (see checkout.Find).
func Locate() (string, error) {
	return checkout.Find(filepath.Join("statemachine", "local"), "run.mjs")
}

func checkInstalled(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "aws-local-stepfunctions", "package.json")); err != nil {
		return fmt.Errorf("the local Step Functions runner is not installed in %s: run `make setup` (npm ci in statemachine/local)", dir)
	}
	return nil
}

type runnerOptions struct {
	WaitMs                 *int           `json:"waitMs,omitempty"`
	WaitTimeOverrides      map[string]int `json:"waitTimeOverrides,omitempty"`
	RetryMs                *int           `json:"retryMs,omitempty"`
	RetryIntervalOverrides map[string]int `json:"retryIntervalOverrides,omitempty"`
	DetailStates           []string       `json:"detailStates"`
	Region                 string         `json:"region"`
	Context                map[string]any `json:"context,omitempty"`
	ClockOffsetMs          int64          `json:"clockOffsetMs,omitempty"`
}

// Run executes the state machine once with the given execution input. The
// error is for a run that could not happen (node missing, runner crashed);
// a failed execution is a Result with Status FAILED.
func (r *Runner) Run(ctx context.Context, input json.RawMessage) (*Result, error) {
	start := time.Now()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the local Lambda endpoint: %w", err)
	}
	srv := &http.Server{Handler: r.Host, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	payload, err := json.Marshal(struct {
		Definition json.RawMessage `json:"definition"`
		Input      json.RawMessage `json:"input"`
		Options    runnerOptions   `json:"options"`
	}{r.def, input, runnerOptions{
		WaitMs: r.opts.WaitMs, WaitTimeOverrides: r.opts.WaitTimeOverrides,
		RetryMs: r.opts.RetryMs, RetryIntervalOverrides: r.opts.RetryIntervalOverrides,
		DetailStates: r.opts.DetailStates, Region: r.opts.Region, Context: r.opts.Context,
		ClockOffsetMs: r.opts.ClockOffset.Milliseconds(),
	}})
	if err != nil {
		return nil, fmt.Errorf("encoding the runner's input: %w", err)
	}

	cmd := exec.CommandContext(ctx, r.opts.Node, "run.mjs")
	cmd.Dir = r.dir
	cmd.Env = r.env("http://" + ln.Addr().String())
	cmd.Stdin = bytes.NewReader(payload)
	// A cancelled run stops node gently first: it may be mid-way through a
	// handler call, which lambdahost then sees cancelled.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stderr tail
	if r.opts.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, r.opts.Stderr)
	} else {
		cmd.Stderr = &stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (Node.js 22 or later is needed: make setup installs it): %w", r.opts.Node, err)
	}
	res := &Result{
		StatesEntered: map[string]int{},
		History:       newHistory(r.taskKind),
		DetailInputs:  map[string][]json.RawMessage{},
		DetailOutputs: map[string][]json.RawMessage{},
	}
	final, readErr := r.read(stdout, res)
	waitErr := cmd.Wait()
	res.Lambda = r.Host.Stats()
	res.Duration = time.Since(start)
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("local execution: %w", ctx.Err())
	case readErr != nil:
		return nil, fmt.Errorf("reading the runner's output: %w%s", readErr, stderr.quote())
	case final == nil:
		return nil, fmt.Errorf("the local runner ended without a result (%v)%s", waitErr, stderr.quote())
	case final.Status == "ERROR":
		return nil, fmt.Errorf("the local runner failed: %s: %s%s", final.Error, final.Cause, stderr.quote())
	}
	res.Status, res.Output, res.Error, res.Cause = final.Status, final.Output, final.Error, final.Cause
	return res, nil
}

func (r *Runner) env(endpoint string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_REGION", "AWS_DEFAULT_REGION",
			"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE":
			continue
		}
		env = append(env, kv)
	}
	// The node side only ever talks to lambdahost: static credentials keep
	// the user's own out of it and need no profile or SSO session.
	return append(env,
		"AWS_ENDPOINT_URL_LAMBDA="+endpoint,
		"AWS_REGION="+r.opts.Region,
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_EC2_METADATA_DISABLED=true",
		"NODE_NO_WARNINGS=1",
	)
}

// read consumes the runner's lines until the Result line.
func (r *Runner) read(out io.Reader, res *Result) (*Event, error) {
	detail := map[string]bool{}
	for _, s := range r.opts.DetailStates {
		detail[s] = true
	}
	sc := bufio.NewScanner(out)
	// A detail line carries a whole state (up to Step Functions' 256 KiB,
	// more when a test proves the limit is hit): allow far more.
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	var final *Event
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("line %.200q: %w", line, err)
		}
		res.History.add(ev)
		switch ev.Type {
		case "StateEntered":
			res.Transitions++
			res.StatesEntered[ev.State]++
			res.notePayload(ev.State, ev.InputBytes)
		case "StateExited":
			res.notePayload(ev.State, ev.OutputBytes)
			if detail[ev.State] {
				res.DetailInputs[ev.State] = append(res.DetailInputs[ev.State], ev.Input)
				res.DetailOutputs[ev.State] = append(res.DetailOutputs[ev.State], ev.Output)
			}
		case "StateRetried":
			res.Retries++
		case "StateCaught":
			res.Caught++
		case "MapIterationStarted":
			res.MapIterations++
		case "ExecutionStarted":
			res.notePayload("(execution input)", ev.InputBytes)
		case "PutEvents":
			res.Events = append(res.Events, ev.Entries...)
		case "Result":
			e := ev
			final = &e
		}
		if r.opts.OnEvent != nil {
			r.opts.OnEvent(ev)
		}
	}
	return final, sc.Err()
}

func (res *Result) notePayload(state string, n int) {
	if n > res.MaxPayloadBytes {
		res.MaxPayloadBytes, res.MaxPayloadState = n, state
	}
}

// tail keeps the last part of node's standard error for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 8 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = t.buf[len(t.buf)-tailMax:]
	}
	return len(p), nil
}

func (t *tail) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return "\nnode stderr:\n" + s
}

// ErrNotSucceeded is what Check returns for an execution that did not succeed.
var ErrNotSucceeded = errors.New("execution did not succeed")

// Check turns a non-successful execution into an error naming its error and cause.
func (r *Result) Check() error {
	if r.Succeeded() {
		return nil
	}
	return fmt.Errorf("%w: %s: %s: %s", ErrNotSucceeded, r.Status, r.Error, r.Cause)
}
