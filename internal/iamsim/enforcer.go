package iamsim

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
)

// LocalTemplate is the template the local world enforces by default: the
// stack synthesized from deploy.json (the policies the demo, `amirotate run`
// tests, the bench and the end-to-end tests rotate) for the simulator's
// account in LocalRegion, with only its IAM resources kept. infra's
// TestLocalTemplate_UpToDate regenerates it (-update) and fails when it is
// stale.
//
//go:embed template.json
var LocalTemplate []byte

// LocalRegion is the home region LocalTemplate was synthesized for.
const LocalRegion = "us-east-1"

// Enforcer is an ec2sim.Authorizer: it answers for the calls signed with a
// step's local access key with that step's role.
type Enforcer struct {
	ev    *Evaluator
	set   string
	roles Roles
	// Strict denies callers without a role too (default: they are allowed,
	// so plain test clients and seeding keep working).
	Strict bool
	// Record keeps every request of a known identity (Requests).
	Record bool

	mu       sync.Mutex
	denials  []ec2sim.Denial
	requests []Request
}

// Request is a recorded request with the step that made it.
type Request struct {
	Step string
	ec2sim.AuthzRequest
}

var setSeq atomic.Int64

// NewEnforcer enforces roles with ev.
func NewEnforcer(ev *Evaluator, roles Roles) (*Enforcer, error) {
	set := fmt.Sprintf("set-%d", setSeq.Add(1))
	if err := ev.Load(set, roles); err != nil {
		return nil, err
	}
	return &Enforcer{ev: ev, set: set, roles: roles}, nil
}

// Known implements ec2sim.Authorizer.
func (e *Enforcer) Known(accessKey string) bool {
	step, ok := ec2x.StepOfLocalAccessKey(accessKey)
	return e.Strict || (ok && e.roles[step] != nil)
}

// Authorize implements ec2sim.Authorizer.
func (e *Enforcer) Authorize(_ context.Context, accessKey string, reqs []ec2sim.AuthzRequest) (*ec2sim.Denial, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	step, _ := ec2x.StepOfLocalAccessKey(accessKey)
	role := e.roles[step]
	if role == nil {
		// Strict: an identity without a role is allowed nothing.
		d := ec2sim.Denial{Request: reqs[0], Principal: "arn:aws:iam::" + ec2sim.AccountID + ":user/" + accessKey,
			Session: "arn:aws:iam::" + ec2sim.AccountID + ":user/" + accessKey}
		e.deny(d)
		return &d, nil
	}
	if e.Record {
		e.mu.Lock()
		for _, r := range reqs {
			e.requests = append(e.requests, Request{Step: step, AuthzRequest: r})
		}
		e.mu.Unlock()
	}
	principal := role.ARN(ec2sim.AccountID)
	decisions, err := e.ev.Evaluate(e.set, step, principal, reqs)
	if err != nil {
		return nil, err
	}
	for i, d := range decisions {
		if d == Allowed {
			continue
		}
		den := ec2sim.Denial{Request: reqs[i], Principal: principal, Explicit: d == ExplicitlyDenied,
			Session: "arn:aws:sts::" + ec2sim.AccountID + ":assumed-role/" + role.LogicalID + "/" + accessKey}
		e.deny(den)
		return &den, nil
	}
	return nil, nil
}

func (e *Enforcer) deny(d ec2sim.Denial) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denials = append(e.denials, d)
}

// Denials returns every denial so far, deferred ones (a parameter left
// unchanged) included.
func (e *Enforcer) Denials() []ec2sim.Denial {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ec2sim.Denial(nil), e.denials...)
}

// Requests returns the recorded requests (Record).
func (e *Enforcer) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.requests...)
}

// Roles returns the roles enforced.
func (e *Enforcer) Roles() Roles { return e.roles }

// DenialsError is nil without denials, else an error listing them.
func (e *Enforcer) DenialsError() error {
	ds := e.Denials()
	if len(ds) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "IAM denied %d request(s):", len(ds))
	for i, d := range ds {
		if i == 10 {
			fmt.Fprintf(&b, "\n  … and %d more", len(ds)-10)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s on %s", d.Session, d.Request.Action, d.Request.Resource)
		if d.Request.Because != "" {
			fmt.Fprintf(&b, " (required by %s)", d.Request.Because)
		}
	}
	return fmt.Errorf("%s", b.String())
}

var shared struct {
	once sync.Once
	ev   *Evaluator
	err  error
}

// SharedEvaluator is one Evaluator per process, started on first use.
func SharedEvaluator() (*Evaluator, error) {
	shared.once.Do(func() { shared.ev, shared.err = StartEvaluator("") })
	return shared.ev, shared.err
}

// Enforce makes sim enforce template (nil: LocalTemplate) with the shared
// evaluator, and returns the Enforcer to read denials from.
func Enforce(sim *ec2sim.Sim, template []byte) (*Enforcer, error) {
	if template == nil {
		template = LocalTemplate
	}
	roles, err := ParseTemplate(template, ec2sim.AccountID, sim.Regions()[0])
	if err != nil {
		return nil, err
	}
	ev, err := SharedEvaluator()
	if err != nil {
		return nil, err
	}
	e, err := NewEnforcer(ev, roles)
	if err != nil {
		return nil, err
	}
	sim.SetAuthorizer(e)
	return e, nil
}
