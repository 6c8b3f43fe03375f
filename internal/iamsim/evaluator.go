package iamsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/amirotate/amirotate/internal/checkout"
	"github.com/amirotate/amirotate/internal/ec2sim"
)

// evaluatorRel is the evaluator's folder, relative to the checkout.
var evaluatorRel = filepath.Join("internal", "iamsim", "evaluator")

// Evaluator is the Node process that evaluates requests against policy
// sets. Requests go one at a time over its stdin/stdout; decisions are
// cached, so a request seen before costs a map lookup. Safe for concurrent
// use.
type Evaluator struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner

	mu    sync.Mutex
	cache map[string]string
}

// StartEvaluator starts the Node process (checkout.Node) from dir ("" =
// found like localrun finds its runner: $AMIROTATE_HOME, else above the
// working directory or the executable).
func StartEvaluator(dir string) (*Evaluator, error) {
	if dir == "" {
		var err error
		if dir, err = locate(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		return nil, fmt.Errorf("the IAM evaluator is not installed in %s: run `make setup` (npm ci there)", dir)
	}
	cmd := exec.Command(checkout.Node(), "evaluate.mjs")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the IAM evaluator (Node.js 22 or later is needed: make setup installs it): %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &Evaluator{cmd: cmd, in: in, out: sc, cache: map[string]string{}}, nil
}

func locate() (string, error) { return checkout.Find(evaluatorRel, "evaluate.mjs") }

// Close ends the process.
func (e *Evaluator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.in.Close()
	return e.cmd.Wait()
}

// roundTrip sends one message and reads its answer (e.mu held).
func (e *Evaluator) roundTrip(msg any, answer any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := e.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("IAM evaluator: %w", err)
	}
	if !e.out.Scan() {
		if err := e.out.Err(); err != nil {
			return fmt.Errorf("IAM evaluator: %w", err)
		}
		return errors.New("IAM evaluator: the process ended")
	}
	var failed struct {
		Error string `json:"error"`
	}
	line := e.out.Bytes()
	if err := json.Unmarshal(line, &failed); err != nil {
		return fmt.Errorf("IAM evaluator: %w", err)
	}
	if failed.Error != "" {
		return fmt.Errorf("IAM evaluator: %s", failed.Error)
	}
	return json.Unmarshal(line, answer)
}

// Load registers (or replaces) a policy set: policies per role name.
func (e *Evaluator) Load(set string, roles Roles) error {
	byStep := map[string][]Policy{}
	for step, r := range roles {
		byStep[step] = r.Policies
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.cache {
		if strings.HasPrefix(k, set+"\x00") {
			delete(e.cache, k)
		}
	}
	var ok struct{}
	return e.roundTrip(map[string]any{"op": "load", "set": set, "roles": byStep}, &ok)
}

// Decision values.
const (
	Allowed          = "Allowed"
	ExplicitlyDenied = "ExplicitlyDenied"
)

// Evaluate decides each request for role (a step) of set; principal is the
// role's ARN.
func (e *Evaluator) Evaluate(set, role, principal string, reqs []ec2sim.AuthzRequest) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(reqs))
	keys := make([]string, len(reqs))
	var ask []ec2sim.AuthzRequest
	var askAt []int
	for i, r := range reqs {
		b, _ := json.Marshal(r)
		keys[i] = set + "\x00" + role + "\x00" + string(b)
		if d, ok := e.cache[keys[i]]; ok {
			out[i] = d
			continue
		}
		ask = append(ask, r)
		askAt = append(askAt, i)
	}
	if len(ask) == 0 {
		return out, nil
	}
	var answer struct {
		Decisions []string `json:"decisions"`
	}
	if err := e.roundTrip(map[string]any{"op": "eval", "set": set, "role": role, "principal": principal,
		"account": ec2sim.AccountID, "requests": ask}, &answer); err != nil {
		return nil, err
	}
	if len(answer.Decisions) != len(ask) {
		return nil, fmt.Errorf("IAM evaluator: %d decisions for %d requests", len(answer.Decisions), len(ask))
	}
	for j, d := range answer.Decisions {
		out[askAt[j]] = d
		e.cache[keys[askAt[j]]] = d
	}
	return out, nil
}
