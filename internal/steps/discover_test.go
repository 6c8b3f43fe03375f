package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

const minimalPolicy = `{"name":"nightly","retention":{"keep":3}`

func scheduleInput(policyExtra string) DiscoverIn {
	return DiscoverIn{
		Input:     json.RawMessage(`{"policy":` + minimalPolicy + policyExtra + `},"trigger":"schedule","scheduledTime":"2026-11-25T03:00:00Z"}`),
		StartTime: testStart,
	}
}

func manualInput(ids ...string) DiscoverIn {
	raw, _ := json.Marshal(ids)
	return DiscoverIn{
		Input:     json.RawMessage(`{"policy":` + minimalPolicy + `},"trigger":"manual","instanceIds":` + string(raw) + `}`),
		StartTime: testStart,
	}
}

func TestDiscover_ResolvesTheSelectorIntoBatches(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	running := e.run(testHome, 4, nil)
	stopped, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "nightly"}, Stopped: true})
	if err != nil {
		t.Fatal(err)
	}
	terminated := e.run(testHome, 1, nil)[0]
	if _, err := e.clients.EC2(testHome).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{terminated}}); err != nil {
		t.Fatal(err)
	}
	e.run(testHome, 2, map[string]string{rotation.TagPolicy: "weekly"})
	e.run("eu-west-1", 2, nil) // not the home region
	e.sim.ResetStats()

	out, err := e.discover().Handle(ctx, scheduleInput(`,"batchSize":2`))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, running...), stopped)
	slices.Sort(want)
	if !slices.Equal(out.Targets, want) {
		t.Errorf("targets = %v, want %v", out.Targets, want)
	}
	var batched []string
	for _, b := range out.Batches {
		if len(b.InstanceIDs) > 2 {
			t.Errorf("batch of %d > batchSize 2", len(b.InstanceIDs))
		}
		batched = append(batched, b.InstanceIDs...)
	}
	if len(out.Batches) != 3 || !slices.Equal(batched, want) {
		t.Errorf("batches = %+v", out.Batches)
	}
	if !out.RetainOthers || out.Rotation.ID != "20261125T0300Z" || out.Rotation.Home != testHome || out.Policy.Name != "nightly" {
		t.Errorf("out = %+v", out)
	}
	// Retries of a call are the SDK's, not discover's: count first attempts.
	if st := e.sim.Stats().FirstAttempts(); st.Calls[testHome]["DescribeInstances"] != 1 || st.Total("") != 1 {
		t.Errorf("discover made %v, want one DescribeInstances", st.Calls)
	}
}

// A fleet is listed in pages of EC2's largest size, never in one answer of
// every instance (which a function would have to hold whole).
func TestDiscover_ListsTheFleetInPages(t *testing.T) {
	e := newSimEnv(t)
	want := e.run(testHome, 1001, nil)
	slices.Sort(want)
	e.sim.ResetStats()
	out, err := e.discover().Handle(context.Background(), scheduleInput(`,"batchSize":100`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Targets, want) || len(out.Batches) != 11 {
		t.Errorf("got %d targets in %d batches, want the %d instances in 11", len(out.Targets), len(out.Batches), len(want))
	}
	if n := e.sim.Stats().FirstAttempts().Calls[testHome]["DescribeInstances"]; n != 2 {
		t.Errorf("DescribeInstances called %d times, want 2 pages of at most 1,000", n)
	}
}

// A test instance amirotate launched to verify an image is never imaged,
// even when the selector matches it: it is refused with the reason, on a
// schedule and when named.
func TestDiscover_RefusesVerificationInstances(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	fleet := e.run(testHome, 2, nil)
	probe := e.run(testHome, 1, map[string]string{rotation.TagVerifies: "ami-0123456789abcdef0"})[0]
	for name, in := range map[string]DiscoverIn{"schedule": scheduleInput(""), "manual": manualInput(probe, fleet[0])} {
		out, err := e.discover().Handle(ctx, in)
		if err != nil {
			t.Fatal(name, err)
		}
		if slices.Contains(out.Targets, probe) || !slices.Contains(out.Targets, fleet[0]) {
			t.Errorf("%s: targets = %v, want the fleet without %s", name, out.Targets, probe)
		}
		if len(out.Refused) != 1 || out.Refused[0].InstanceID != probe || !strings.Contains(out.Refused[0].Error, "verification instance") ||
			!strings.Contains(out.Refused[0].Error, "narrow the policy's selector") {
			t.Errorf("%s: refused = %+v, want %s refused as a verification instance", name, out.Refused, probe)
		}
	}
}

func TestDiscover_ExplicitInstancesMustStillMatch(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ok := e.run(testHome, 2, nil)
	other := e.run(testHome, 1, map[string]string{rotation.TagPolicy: "weekly"})[0]
	gone := e.run(testHome, 1, nil)[0]
	if _, err := e.clients.EC2(testHome).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	never := "i-0123456789abcdef0"

	out, err := e.discover().Handle(ctx, manualInput(ok[0], other, gone, never, ok[1]))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Targets, ok) || len(out.Batches) != 1 || out.RetainOthers {
		t.Errorf("targets %v batches %+v retainOthers %v", out.Targets, out.Batches, out.RetainOthers)
	}
	reasons := map[string]string{}
	for _, r := range out.Refused {
		if r.State != rotation.StateRefused {
			t.Errorf("refused record state %q", r.State)
		}
		reasons[r.InstanceID] = r.Error
	}
	for id, want := range map[string]string{other: "selector", gone: "terminated", never: "not found"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("%s refused with %q, want it to mention %q", id, reasons[id], want)
		}
	}
}

func TestDiscover_RetainOthersOnlyForWholeSelectorRuns(t *testing.T) {
	e := newSimEnv(t)
	id := e.run(testHome, 1, nil)[0]
	event := fmt.Sprintf(`{"version":"0","id":"x","detail-type":"Tag Change on Resource","source":"aws.tag","account":"123456789012",
		"time":"2026-11-25T02:41:38Z","region":"%s","resources":["arn:aws:ec2:%s:123456789012:instance/%s"],
		"detail":{"changed-tag-keys":["amirotate:rebuild"],"service":"ec2","resource-type":"instance","version":3.0,"tags":{"amirotate:policy":"nightly"}}}`,
		testHome, testHome, id)
	tests := []struct {
		name  string
		input string
		want  bool
	}{
		{"schedule", `{"policy":` + minimalPolicy + `},"trigger":"schedule","scheduledTime":"2026-11-25T03:00:00Z"}`, true},
		{"manual, every instance", `{"policy":` + minimalPolicy + `},"trigger":"manual"}`, true},
		{"manual, named instances", `{"policy":` + minimalPolicy + `},"trigger":"manual","instanceIds":["` + id + `"]}`, false},
		{"tag change", `{"policy":` + minimalPolicy + `},"trigger":"tag-change","event":` + event + `}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := e.discover().Handle(context.Background(), DiscoverIn{Input: json.RawMessage(tt.input), StartTime: testStart})
			if err != nil {
				t.Fatal(err)
			}
			if out.RetainOthers != tt.want || !slices.Equal(out.Targets, []string{id}) {
				t.Errorf("retainOthers %v targets %v, want %v [%s]", out.RetainOthers, out.Targets, tt.want, id)
			}
		})
	}
}

func TestDiscover_TagChangeInAnotherRegionIsRefused(t *testing.T) {
	e := newSimEnv(t)
	id := e.run("eu-west-1", 1, nil)[0]
	event := fmt.Sprintf(`{"version":"0","id":"x","detail-type":"Tag Change on Resource","source":"aws.tag","account":"123456789012",
		"time":"2026-11-25T02:41:38Z","region":"eu-west-1","resources":["arn:aws:ec2:eu-west-1:123456789012:instance/%s"],
		"detail":{"changed-tag-keys":["amirotate:rebuild"],"service":"ec2","resource-type":"instance","version":3,"tags":{}}}`, id)
	out, err := e.discover().Handle(context.Background(), DiscoverIn{
		Input: json.RawMessage(`{"policy":` + minimalPolicy + `},"trigger":"tag-change","event":` + event + `}`), StartTime: testStart})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Targets) != 0 || len(out.Refused) != 1 || !strings.Contains(out.Refused[0].Error, "eu-west-1") {
		t.Errorf("out = %+v", out)
	}
}

func TestDiscover_MalformedPoliciesAndEventsAreInvalidInput(t *testing.T) {
	e := newSimEnv(t)
	h := NewDiscover(e.clients, Env{Now: e.now}).Handle
	tests := []struct {
		name, input, field string
	}{
		{"no input", ``, "input"},
		{"not an object", `[1,2]`, ""},
		{"unknown trigger", `{"policy":` + minimalPolicy + `},"trigger":"hourly"}`, "trigger"},
		{"unknown policy field", `{"policy":{"name":"nightly","retention":{"keep":3},"noreboot":true},"trigger":"manual"}`, "noreboot"},
		{"no retention", `{"policy":{"name":"nightly"},"trigger":"manual"}`, "retention"},
		{"bad region", `{"policy":` + minimalPolicy + `,"copyTo":[{"region":"moon-1"}]},"trigger":"manual"}`, "copyTo[0]"},
		{"public without allowPublic", `{"policy":` + minimalPolicy + `,"shareWith":["all"]},"trigger":"manual"}`, "shareWith"},
		{"copy into the home region", `{"policy":` + minimalPolicy + `,"copyTo":[{"region":"us-east-1"}]},"trigger":"manual"}`, "copyTo[0]"},
		{"bad instance id", `{"policy":` + minimalPolicy + `},"trigger":"manual","instanceIds":["web-1"]}`, "instanceIds[0]"},
		{"schedule without time", `{"policy":` + minimalPolicy + `},"trigger":"schedule"}`, "scheduledTime"},
		{"event of another kind", `{"policy":` + minimalPolicy + `},"trigger":"tag-change","event":{"detail-type":"EC2 AMI State Change","source":"aws.ec2"}}`, "event"},
	}
	files, _ := filepath.Glob("../rotation/testdata/bad-input-*.json")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, input, field string }{filepath.Base(f), string(raw), ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var typ, msg string
			if json.Valid([]byte(tt.input)) || tt.input == "" {
				in := map[string]any{"startTime": testStart}
				if tt.input != "" {
					in["input"] = json.RawMessage(tt.input)
				}
				typ, msg = lambdaErrorType(t, h, in)
			} else {
				// Not JSON at all: no Lambda payload can carry it, so call the handler.
				_, err := h(context.Background(), DiscoverIn{Input: json.RawMessage(tt.input), StartTime: testStart})
				if err == nil {
					t.Fatal("want an error")
				}
				typ, msg = fmt.Sprintf("%T", err), err.Error()
				typ = typ[strings.LastIndex(typ, ".")+1:]
			}
			if typ != "InvalidInputError" {
				t.Fatalf("errorType %q (%s), want InvalidInputError", typ, msg)
			}
			if !strings.Contains(msg, tt.field) {
				t.Errorf("message %q does not name %q", msg, tt.field)
			}
		})
	}
	if e.sim.Stats().Total("") != 0 {
		t.Errorf("invalid input reached EC2: %v", e.sim.Stats().Calls)
	}
}

func TestDiscover_ErrorNamesReachTheLambdaResponse(t *testing.T) {
	in := scheduleInput("")
	if typ, _ := lambdaErrorType(t, NewDiscover(deadClients(t), Env{Now: fixedNow(testStart)}).Handle, in); typ != "RetryableError" {
		t.Errorf("failing EC2: errorType %q, want RetryableError", typ)
	}
	e := newSimEnv(t)
	if err := e.sim.Inject(ec2sim.Fault{Action: "DescribeInstances", Code: "UnauthorizedOperation"}); err != nil {
		t.Fatal(err)
	}
	if typ, _ := lambdaErrorType(t, NewDiscover(e.clients, Env{Now: e.now}).Handle, in); typ != "FatalError" {
		t.Errorf("unauthorized: errorType %q, want FatalError", typ)
	}
}
