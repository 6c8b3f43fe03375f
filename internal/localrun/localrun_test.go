package localrun

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// fakeFleet stands in for the real steps: it exercises the definition's
// flow (Map, ItemSelector, Wait SecondsPath, the Choice loop, Retry, Catch,
// putEvents) through the node runner and lambdahost, and records what it saw.
type fakeFleet struct {
	batchSize   int
	failTagOf   string // instance whose batch's Tag fails for good
	waitSeconds int    // what snapshot and poll ask the Wait state for (default 30)
	throttleOne atomic.Bool
	invalid     bool

	// overlap, when above 1, holds the first snapshot calls until that many
	// are in flight together (or overlapTimeout passes), so a test sees
	// concurrent Map iterations however fast each one would finish.
	overlap int

	mu          sync.Mutex
	selected    [][]string
	excluded    []string // what RetentionOthers got as this rotation's targets
	inflight    int
	maxInflight int
	overlapped  chan struct{} // closed once overlap calls were in flight at once
}

// overlapTimeout bounds how long the first snapshot calls wait for each
// other: far longer than starting Map iterations takes on a loaded machine,
// short enough that a runner that never overlaps them fails the test soon.
const overlapTimeout = 30 * time.Second

// enter counts a snapshot call in flight and, while overlap calls have not
// yet been in flight together, waits until they are.
func (f *fakeFleet) enter() {
	f.mu.Lock()
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	if f.overlapped == nil {
		f.overlapped = make(chan struct{})
	}
	overlapped := f.overlapped
	if f.inflight >= f.overlap {
		select {
		case <-overlapped:
		default:
			close(overlapped)
		}
	}
	f.mu.Unlock()
	select {
	case <-overlapped:
	case <-time.After(overlapTimeout):
	}
}

func (f *fakeFleet) leave() {
	f.mu.Lock()
	f.inflight--
	f.mu.Unlock()
}

type fakeInput struct {
	InstanceIDs []string        `json:"instanceIds"`
	Policy      rotation.Policy `json:"policy"`
}

func (f *fakeFleet) discover(_ context.Context, in steps.DiscoverIn) (steps.DiscoverOut, error) {
	var fi fakeInput
	if err := json.Unmarshal(in.Input, &fi); err != nil {
		return steps.DiscoverOut{}, err
	}
	if f.invalid {
		return steps.DiscoverOut{}, rotation.InvalidInputError{Problems: []rotation.Problem{{Field: "policy.name", Message: "must match [a-z0-9-]{1,32}"}}}
	}
	out := steps.DiscoverOut{
		Policy:       fi.Policy,
		Rotation:     rotation.Rotation{ID: "20261125T0300Z", Time: in.StartTime, Trigger: "manual", StartedAt: in.StartTime, Home: "us-east-1"},
		Refused:      []rotation.Record{},
		RetainOthers: true,
		Targets:      fi.InstanceIDs,
	}
	for i := 0; i < len(fi.InstanceIDs); i += f.batchSize {
		out.Batches = append(out.Batches, steps.BatchItem{InstanceIDs: fi.InstanceIDs[i:min(i+f.batchSize, len(fi.InstanceIDs))]})
	}
	return out, nil
}

func (f *fakeFleet) snapshot(_ context.Context, b steps.Batch) (steps.Batch, error) {
	if f.throttleOne.CompareAndSwap(true, false) {
		return b, ec2x.RetryableError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	}
	f.mu.Lock()
	f.selected = append(f.selected, b.InstanceIDs)
	f.mu.Unlock()
	f.enter()
	defer f.leave()
	for _, id := range b.InstanceIDs {
		b.Images = append(b.Images, rotation.Record{InstanceID: id, Region: "us-east-1", ImageID: "ami-" + id, State: rotation.StatePending})
	}
	b.Pending, b.WaitSeconds = len(b.InstanceIDs), cmp.Or(f.waitSeconds, 30)
	return b, nil
}

// poll makes sources available on the second poll; copies on the next one.
func (f *fakeFleet) poll(_ context.Context, b steps.Batch) (steps.Batch, error) {
	b.Polls++
	b.Pending, b.ToCopy = 0, 0
	copied := map[string]bool{}
	for i := range b.Images {
		r := &b.Images[i]
		if r.SourceImageID != "" {
			copied[r.SourceImageID+r.Region] = true
		}
		if r.State == rotation.StatePending && (b.Polls >= 2 || r.SourceImageID != "") {
			r.State = rotation.StateAvailable
		}
		if r.State == rotation.StatePending {
			b.Pending++
		}
	}
	for _, r := range b.Images {
		if r.SourceImageID == "" && r.State == rotation.StateAvailable {
			for _, t := range b.Policy.CopyTo {
				if !copied[r.ImageID+t.Region] {
					b.ToCopy++
				}
			}
		}
	}
	b.WaitSeconds = cmp.Or(f.waitSeconds, 60)
	return b, nil
}

func (f *fakeFleet) copy(_ context.Context, b steps.Batch) (steps.Batch, error) {
	var add []rotation.Record
	for _, r := range b.Images {
		if r.SourceImageID == "" && r.State == rotation.StateAvailable {
			for _, t := range b.Policy.CopyTo {
				add = append(add, rotation.Record{InstanceID: r.InstanceID, Region: t.Region, ImageID: r.ImageID + "-" + t.Region, SourceImageID: r.ImageID, State: rotation.StatePending})
			}
		}
	}
	b.Images = append(b.Images, add...)
	b.Pending, b.ToCopy = len(add), 0
	return b, nil
}

func (f *fakeFleet) tag(_ context.Context, b steps.Batch) (steps.Batch, error) {
	for _, id := range b.InstanceIDs {
		if id == f.failTagOf {
			return b, ec2x.FatalError{Code: "UnauthorizedOperation", Message: "You are not authorized to perform this operation."}
		}
	}
	return b, nil
}

func (f *fakeFleet) passBatch(_ context.Context, b steps.Batch) (steps.Batch, error) { return b, nil }

func (f *fakeFleet) retention(_ context.Context, raw json.RawMessage) (any, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, err
	}
	if raw, ok := probe["exclude"]; ok {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := json.Unmarshal(raw, &f.excluded); err != nil {
			return nil, err
		}
		return steps.RetentionOthersOut{Retention: []rotation.ScopeReport{}}, nil
	}
	var b steps.Batch
	err := json.Unmarshal(raw, &b)
	return b, err
}

func (f *fakeFleet) handlers() map[string]any {
	return map[string]any{
		ec2x.StepDiscover: f.discover, ec2x.StepSnapshot: f.snapshot, ec2x.StepPoll: f.poll, ec2x.StepCopy: f.copy,
		ec2x.StepTag: f.tag, ec2x.StepPublish: f.passBatch, ec2x.StepRoll: f.passBatch, ec2x.StepVerify: f.passBatch, ec2x.StepRetention: f.retention, ec2x.StepReport: steps.Report{}.Handle,
		ec2x.StepScripts: f.passBatch, // its policies have no scripts: the Scripts? Choice skips it
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("i-%017d", i)
	}
	return out
}

func input(t *testing.T, n int) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(fakeInput{
		InstanceIDs: ids(n),
		Policy:      rotation.Policy{Name: "nightly", CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}, {Region: "ap-southeast-2"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fast(f *fakeFleet, extra func(*Options)) Options {
	zero, ms := 0, 5
	o := Options{Handlers: f.handlers(), WaitMs: &zero, RetryMs: &ms}
	if extra != nil {
		extra(&o)
	}
	return o
}

func run(t *testing.T, o Options, in json.RawMessage) *Result {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func summaryOf(t *testing.T, res *Result) steps.Summary {
	t.Helper()
	outs := res.DetailOutputs["Report"]
	if len(outs) != 1 {
		t.Fatalf("Report ran %d times", len(outs))
	}
	var out steps.ReportOut
	if err := json.Unmarshal(outs[0], &out); err != nil {
		t.Fatal(err)
	}
	return out.Summary
}

// TestRunner_MapWaitPollCopyLoop covers Map with ItemSelector and
// MaxConcurrency, Wait with SecondsPath (overridden), the Choice loop
// through Copy, Report, the putEvents local handler and the event stream.
func TestRunner_MapWaitPollCopyLoop(t *testing.T) {
	f := &fakeFleet{batchSize: 2}
	var mu sync.Mutex
	seen := map[string]int{}
	res := run(t, fast(f, func(o *Options) {
		o.OnEvent = func(e Event) { mu.Lock(); seen[e.Type]++; mu.Unlock() }
	}), input(t, 5))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.MapIterations != 3 || len(f.selected) != 3 {
		t.Fatalf("map iterations %d, snapshot batches %v", res.MapIterations, f.selected)
	}
	s := summaryOf(t, res)
	if s.Instances != 5 || s.Outcomes[steps.OutcomeOK] != 5 || s.ImagesCreated != 5 || s.CopiesCreated != 10 || s.Failed {
		t.Fatalf("summary %+v", s)
	}
	if len(res.Events) != 1 || res.Events[0].DetailType != "AMI Rotation Completed" || res.Events[0].Source != "amirotate" || res.Events[0].EventBusName != "default" {
		t.Fatalf("events %+v", res.Events)
	}
	var detail steps.Summary
	if err := json.Unmarshal(res.Events[0].Detail, &detail); err != nil || detail.Instances != 5 {
		t.Fatalf("event detail %s (%v)", res.Events[0].Detail, err)
	}
	// Per batch: Snapshot, ImagesDone?, (Wait, Poll, ImagesDone?) ×2 with a
	// Copy before the second, a last loop for the copies, Tag, Publish,
	// Retention, BatchReport.
	if got := res.StatesEntered["Poll"]; got != 9 {
		t.Fatalf("Poll entered %d times, want 3 per batch", got)
	}
	if got := res.StatesEntered["Copy"]; got != 3 {
		t.Fatalf("Copy entered %d times", got)
	}
	if seen["StateEntered"] != res.Transitions || seen["Result"] != 1 || seen["PutEvents"] != 1 {
		t.Fatalf("events seen %v, transitions %d", seen, res.Transitions)
	}
	if got := len(res.DetailInputs["BatchReport"]); got != 3 {
		t.Fatalf("BatchReport inputs %d", got)
	}
	// The state holds the targets once, in the batches; RetentionOthers
	// gets all of them, flattened.
	if !slices.Equal(f.excluded, ids(5)) {
		t.Fatalf("RetentionOthers excluded %v, want the 5 targets", f.excluded)
	}
	if res.Lambda.Invocations["amirotate-snapshot"] != 3 || res.MaxPayloadBytes == 0 {
		t.Fatalf("lambda stats %+v, max payload %d", res.Lambda, res.MaxPayloadBytes)
	}
	t.Logf("transitions %d for 5 instances in 3 batches (%v)", res.Transitions, res.StatesEntered)
}

// The Map runs iterations concurrently, at most MaxConcurrency (4) at once.
func TestRunner_MapHonoursMaxConcurrency(t *testing.T) {
	f := &fakeFleet{batchSize: 1, overlap: 2}
	res := run(t, fast(f, nil), input(t, 10))
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.MapIterations != 10 || f.maxInflight < f.overlap || f.maxInflight > 4 {
		t.Fatalf("%d iterations, at most %d at once; want 10, %d to 4", res.MapIterations, f.maxInflight, f.overlap)
	}
}

// A RetryableError and a crashed runtime are retried. Snapshot's retry
// waits the definition's own jittered interval and the Waits their
// SecondsPath (1 s): no overrides but the crash's longer retry interval.
func TestRunner_RetriesRetryableErrorAndCrash(t *testing.T) {
	f := &fakeFleet{batchSize: 10, waitSeconds: 1}
	f.throttleOne.Store(true)
	r, err := New(Options{Handlers: f.handlers(), RetryIntervalOverrides: map[string]int{"Poll": 10}})
	if err != nil {
		t.Fatal(err)
	}
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-poll", Count: 1, AfterHandler: true})
	start := time.Now()
	res, err := r.Run(context.Background(), input(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.Retries != 2 || res.Lambda.Errors["amirotate-snapshot"] != 1 || res.Lambda.Errors["amirotate-poll"] != 1 {
		t.Fatalf("retries %d, lambda %+v", res.Retries, res.Lambda)
	}
	// Three Waits of 1 s each (sources, then the poll retried after the
	// crash is not a Wait, then copies): SecondsPath was honoured.
	if waits := res.StatesEntered["WaitImages"]; time.Since(start) < time.Duration(waits)*time.Second {
		t.Fatalf("%d waits took only %v", waits, time.Since(start))
	}
}

// A Lambda service error that outlasts the SDK's own retries reaches the
// state machine as Lambda.TooManyRequestsException, which the definition
// retries, as Step Functions names and retries it.
func TestRunner_RetriesLambdaServiceErrors(t *testing.T) {
	f := &fakeFleet{batchSize: 10}
	var failed []string
	var mu sync.Mutex
	r, err := New(fast(f, func(o *Options) {
		o.OnEvent = func(e Event) {
			if e.Type == "StateFailed" {
				mu.Lock()
				failed = append(failed, e.State+": "+e.Error)
				mu.Unlock()
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	r.Host.Inject(lambdahost.Fault{Function: "amirotate-tag", Count: 3, ServiceError: "TooManyRequestsException"})
	res, err := r.Run(context.Background(), input(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.Retries != 1 || len(failed) != 1 || failed[0] != "Tag: Lambda.TooManyRequestsException" {
		t.Fatalf("retries %d, failures %v", res.Retries, failed)
	}
}

// A FatalError in one batch is caught into that batch's report; the other
// batches finish, and the execution fails visibly with the summary's cause.
func TestRunner_CatchReportsAndFailsVisibly(t *testing.T) {
	f := &fakeFleet{batchSize: 2, failTagOf: "i-00000000000000002"}
	res := run(t, fast(f, nil), input(t, 5))
	if res.Status != StatusFailed || res.Error != "RotationFailed" {
		t.Fatalf("status %s error %s cause %s", res.Status, res.Error, res.Cause)
	}
	if !strings.Contains(res.Cause, "2 of 5 instances not rotated") {
		t.Fatalf("cause %q", res.Cause)
	}
	s := summaryOf(t, res)
	if s.Outcomes[steps.OutcomeOK] != 3 || s.Outcomes[steps.OutcomeError] != 2 || !s.Failed {
		t.Fatalf("summary %+v", s)
	}
	if res.Caught != 1 || res.StatesEntered["Retention"] != 2 {
		t.Fatalf("caught %d, retention entered %d", res.Caught, res.StatesEntered["Retention"])
	}
	if len(res.Events) != 1 {
		t.Fatalf("the failed rotation must still publish its event, got %d", len(res.Events))
	}
}

func TestRunner_InvalidInputFailsWithTheMessage(t *testing.T) {
	f := &fakeFleet{batchSize: 2, invalid: true}
	res := run(t, fast(f, nil), input(t, 1))
	if res.Status != StatusFailed || res.Error != "InvalidInputError" || !strings.Contains(res.Cause, "policy.name") {
		t.Fatalf("status %s error %q cause %q", res.Status, res.Error, res.Cause)
	}
	if res.Retries != 0 || res.Lambda.Invocations["amirotate-discover"] != 1 {
		t.Fatalf("invalid input was retried: %+v", res.Lambda)
	}
}

func TestNew_ExplainsAMissingInstall(t *testing.T) {
	_, err := New(Options{RunnerDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make setup") {
		t.Fatalf("err = %v", err)
	}
}
