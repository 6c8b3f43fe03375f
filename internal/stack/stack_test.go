package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/amirotate/amirotate/internal/ec2x"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/rotation"
)

// localTemplate is the whole template infra synthesizes from
// internal/iamsim/deploy.json (kept by infra's TestLocalTemplate_UpToDate).
func localTemplate(t *testing.T) *Template {
	t.Helper()
	raw, err := os.ReadFile("testdata/local.template.json")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(raw, "Local", ec2sim.AccountID, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestParseTemplate_TheSynthesizedStack(t *testing.T) {
	tmpl := localTemplate(t)
	if len(tmpl.Functions) != len(ec2x.Steps) || len(tmpl.Schedules) != 7 || len(tmpl.Rules) != 7 {
		t.Fatalf("%d functions, %d schedules, %d rules; want %d, 7, 7", len(tmpl.Functions), len(tmpl.Schedules), len(tmpl.Rules), len(ec2x.Steps))
	}
	def := string(tmpl.StateMachine.Definition)
	if tmpl.StateMachine.Stale {
		t.Error("the synthesized definition is not statemachine/rotation.asl.json's (regenerate with go test ./infra -run TestLocalTemplate -update)")
	}
	if strings.Contains(def, "${") {
		t.Errorf("the definition keeps a substitution: %.300s", def)
	}
	steps := map[string]bool{}
	for _, f := range tmpl.Functions {
		steps[f.Step] = true
		if !strings.Contains(def, `"`+f.ARN+`"`) {
			t.Errorf("the definition does not name function %s (%s)", f.LogicalID, f.ARN)
		}
		if _, err := rotation.ParsePins(f.Env[rotation.PinsEnv]); err != nil || f.Env[rotation.PinsEnv] == "" {
			t.Errorf("function %s: pins %q: %v", f.LogicalID, f.Env[rotation.PinsEnv], err)
		}
	}
	if len(steps) != len(ec2x.Steps) {
		t.Errorf("steps %v", steps)
	}
	if tmpl.Outputs["StateMachineArn"] != tmpl.StateMachine.ARN {
		t.Errorf("output StateMachineArn %q, want %q", tmpl.Outputs["StateMachineArn"], tmpl.StateMachine.ARN)
	}
	for _, s := range tmpl.Schedules {
		if !strings.Contains(s.Input, "<aws.scheduler.scheduled-time>") || s.RoleID == "" || s.TimeZone == "" {
			t.Errorf("schedule %+v", s)
		}
	}
	for _, r := range tmpl.Rules {
		if !strings.Contains(r.InputTemplate, "<aws.events.event>") || r.RoleID == "" {
			t.Errorf("rule %+v", r)
		}
	}
}

func TestParseTemplate_TellsAStaleDefinition(t *testing.T) {
	raw, err := os.ReadFile("testdata/local.template.json")
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Replace(raw, []byte(`\"RetentionOthers\"`), []byte(`\"RetentionOthersOld\"`), -1)
	tmpl, err := ParseTemplate(old, "Local", ec2sim.AccountID, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if !tmpl.StateMachine.Stale {
		t.Error("a definition other than this version's is not flagged stale")
	}
}

type world struct {
	sim   *ec2sim.Sim
	clock *ec2sim.ShiftedClock
	stack *Stack
	ec2   *ec2.Client
	sfn   *sfn.Client
	log   *syncBuffer
	arn   string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newWorld runs the local stack of the synthesized template in-process,
// with the template's roles enforced for the functions and, when triggers
// is set, for the schedules' and rules' roles.
func newWorld(t *testing.T, triggers func(*Template) *iamsim.RoleAuthorizer) *world {
	t.Helper()
	tmpl := localTemplate(t)
	clock := ec2sim.NewShiftedClock()
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1", "eu-west-1", "ap-southeast-2"}, Clock: clock, ImageDelay: 200 * time.Millisecond})
	if _, err := iamsim.Enforce(sim, tmpl.Raw); err != nil {
		t.Fatal(err)
	}
	w := &world{sim: sim, clock: clock, log: &syncBuffer{}, arn: tmpl.StateMachine.ARN}
	srv := httptest.NewUnstartedServer(nil)
	wait := 100
	opts := Options{Template: tmpl, Sim: sim, Endpoint: "http://" + srv.Listener.Addr().String(), WaitMs: &wait, Log: w.log}
	if triggers != nil {
		opts.Triggers = triggers(tmpl)
	}
	st, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.stack = st
	srv.Config.Handler = st
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	cfg := ec2sim.AWSConfig(srv.URL, "us-east-1")
	w.ec2, w.sfn = ec2.NewFromConfig(cfg), sfn.NewFromConfig(cfg)
	return w
}

func (w *world) launch(t *testing.T, tags map[string]string) string {
	t.Helper()
	var tt []ec2types.Tag
	for k, v := range tags {
		tt = append(tt, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	out, err := w.ec2.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(ec2sim.BaseImageID("us-east-1")),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: tt}}})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Instances[0].InstanceId
}

func (w *world) tag(t *testing.T, id, k, v string) {
	t.Helper()
	if _, err := w.ec2.CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: []string{id},
		Tags: []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}}); err != nil {
		t.Fatal(err)
	}
}

func (w *world) executions(t *testing.T) []sfntypes.ExecutionListItem {
	t.Helper()
	var out []sfntypes.ExecutionListItem
	p := sfn.NewListExecutionsPaginator(w.sfn, &sfn.ListExecutionsInput{StateMachineArn: aws.String(w.arn), MaxResults: 2})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Executions...)
	}
	return out
}

// finished waits until n executions exist and none is running.
func (w *world) finished(t *testing.T, n int) []sfntypes.ExecutionListItem {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		es := w.executions(t)
		running := 0
		for _, e := range es {
			if e.Status == sfntypes.ExecutionStatusRunning {
				running++
			}
		}
		if len(es) >= n && running == 0 {
			return es
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("executions did not finish: %+v\nlog:\n%s", w.executions(t), w.log.String())
	return nil
}

func (w *world) input(t *testing.T, arn string) map[string]any {
	t.Helper()
	d, err := w.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(*d.Input), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func (w *world) imagesOf(t *testing.T, instance string) []ec2types.Image {
	t.Helper()
	out, err := w.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:amirotate:instance-id"), Values: []string{instance}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Images
}

func TestStack_TagChangeRotatesThatInstanceOnly(t *testing.T) {
	w := newWorld(t, nil)
	web := w.launch(t, map[string]string{"amirotate:policy": "web"})
	sibling := w.launch(t, map[string]string{"amirotate:policy": "web"})
	outside := w.launch(t, map[string]string{"Name": "not-managed"})

	w.tag(t, outside, rotation.TagRebuild, "1")
	w.tag(t, web, "Name", "web-1") // another key
	time.Sleep(300 * time.Millisecond)
	if es := w.executions(t); len(es) != 0 {
		t.Fatalf("executions started by tag changes no rule matches: %+v", es)
	}

	w.tag(t, web, rotation.TagRebuild, "2026-11-25")
	es := w.finished(t, 1)
	if len(es) != 1 || es[0].Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("executions %+v\nlog:\n%s", es, w.log.String())
	}
	in := w.input(t, *es[0].ExecutionArn)
	event, _ := in["event"].(map[string]any)
	if in["trigger"] != rotation.TriggerTagChange || event["detail-type"] != rotation.TagChangeDetailType {
		t.Errorf("input %v", in)
	}
	if got := len(w.imagesOf(t, web)); got != 1 {
		t.Errorf("%d images of %s in us-east-1, want 1", got, web)
	}
	for _, id := range []string{sibling, outside} {
		if got := w.imagesOf(t, id); len(got) != 0 {
			t.Errorf("images of %s, which was not rebuilt: %d", id, len(got))
		}
	}

	// The history tells the story Step Functions would.
	h, err := w.sfn.GetExecutionHistory(context.Background(), &sfn.GetExecutionHistoryInput{ExecutionArn: es[0].ExecutionArn, MaxResults: 1000})
	if err != nil {
		t.Fatal(err)
	}
	first, last := h.Events[0], h.Events[len(h.Events)-1]
	if first.Type != sfntypes.HistoryEventTypeExecutionStarted || last.Type != sfntypes.HistoryEventTypeExecutionSucceeded {
		t.Errorf("history from %s to %s", first.Type, last.Type)
	}
	entered := 0
	for _, e := range h.Events {
		if e.Type == sfntypes.HistoryEventTypeTaskStateEntered && *e.StateEnteredEventDetails.Name == "Snapshot" {
			entered++
		}
	}
	if entered != 1 {
		t.Errorf("Snapshot entered %d times in the history, want 1", entered)
	}
	// Paged by 7, in order and newest first, the history is the same.
	for _, reverse := range []bool{false, true} {
		var ids []int64
		p := sfn.NewGetExecutionHistoryPaginator(w.sfn, &sfn.GetExecutionHistoryInput{ExecutionArn: es[0].ExecutionArn, MaxResults: 7, ReverseOrder: reverse})
		for p.HasMorePages() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Events {
				ids = append(ids, e.Id)
			}
		}
		if reverse {
			slices.Reverse(ids)
		}
		if len(ids) != len(h.Events) || ids[0] != 1 || ids[len(ids)-1] != int64(len(h.Events)) {
			t.Errorf("paged history (reverse %v): %d events from %v, want %d", reverse, len(ids), ids[:min(3, len(ids))], len(h.Events))
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] != ids[i-1]+1 {
				t.Errorf("paged history (reverse %v): event %d after %d", reverse, ids[i], ids[i-1])
				break
			}
		}
	}
}

func TestStack_ScheduleFiresOnTheSimulatorsClock(t *testing.T) {
	w := newWorld(t, nil)
	web := w.launch(t, map[string]string{"amirotate:policy": "web"})
	// web's schedule: cron(0 3 * * ? *) UTC.
	now := w.sim.Now()
	next := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, time.UTC)
	if !next.After(now) {
		next = next.AddDate(0, 0, 1)
	}
	w.clock.Set(next.Add(-2 * time.Second))
	time.Sleep(300 * time.Millisecond)
	// The jump may pass other schedules' times (then they fire, rightly):
	// none of those executions may be this time's.
	at := func(e sfntypes.ExecutionListItem) bool {
		return w.input(t, *e.ExecutionArn)["scheduledTime"] == next.Format(time.RFC3339)
	}
	early := w.executions(t)
	for _, e := range early {
		if at(e) {
			t.Fatalf("started before the schedule's time: %s", *e.Name)
		}
	}
	w.clock.Set(next.Add(30 * time.Second))
	var es []sfntypes.ExecutionListItem
	for _, e := range w.finished(t, len(early)+2) { // web's and db's schedules (db has no instance)
		if at(e) {
			es = append(es, e)
		}
	}
	if len(es) != 2 {
		t.Fatalf("%d executions scheduled at %s, want web's and db's: %+v", len(es), next, es)
	}
	var webRun *sfntypes.ExecutionListItem
	for i, e := range es {
		in := w.input(t, *e.ExecutionArn)
		p, _ := in["policy"].(map[string]any)
		if in["trigger"] != rotation.TriggerSchedule || in["scheduledTime"] != next.Format(time.RFC3339) {
			t.Errorf("execution %s input %v", *e.Name, in)
		}
		if p["name"] == "web" {
			webRun = &es[i]
		}
	}
	if webRun == nil || webRun.Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("web's scheduled rotation: %+v\nlog:\n%s", webRun, w.log.String())
	}
	made := 0
	for _, im := range w.imagesOf(t, web) {
		if strings.HasSuffix(*im.Name, next.Format("20060102T1504Z")) {
			made++
		}
	}
	if made != 1 {
		t.Errorf("%s has %d images of the scheduled rotation, want 1", web, made)
	}
}

func TestStack_TriggersNeedTheirRoles(t *testing.T) {
	w := newWorld(t, func(tmpl *Template) *iamsim.RoleAuthorizer {
		sm := tmpl.StateMachine
		roles, err := iamsim.ParseRoles(tmpl.Raw, tmpl.Account, tmpl.Region, tmpl.TriggerRoles(), map[string]string{sm.LogicalID: sm.ARN})
		if err != nil {
			t.Fatal(err)
		}
		// The rules' role loses its policy: EventBridge could not start
		// the state machine.
		roles[tmpl.Rules[0].RoleID].Policies = nil
		a, err := iamsim.NewRoleAuthorizer(roles)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Allowed(tmpl.Schedules[0].RoleID, "states:StartExecution", sm.ARN); err != nil {
			t.Errorf("the schedules' role: %v", err)
		}
		if err := a.Allowed(tmpl.Schedules[0].RoleID, "states:StartExecution", sm.ARN+"-other"); err == nil {
			t.Error("the schedules' role may start another state machine")
		}
		return a
	})
	web := w.launch(t, map[string]string{"amirotate:policy": "web"})
	w.tag(t, web, rotation.TagRebuild, "1")
	time.Sleep(500 * time.Millisecond)
	if es := w.executions(t); len(es) != 0 {
		t.Fatalf("started without the role's permission: %+v", es)
	}
	if !strings.Contains(w.log.String(), "is not authorized to perform: states:StartExecution") {
		t.Errorf("log:\n%s", w.log.String())
	}
}

func TestStack_StepFunctionsErrors(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	_, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn + "x")})
	var notSM *sfntypes.StateMachineDoesNotExist
	if !errors.As(err, &notSM) {
		t.Errorf("unknown state machine: %v", err)
	}
	_, err = w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Input: aws.String("{nope")})
	var badInput *sfntypes.InvalidExecutionInput
	if !errors.As(err, &badInput) {
		t.Errorf("bad input: %v", err)
	}
	_, err = w.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(strings.Replace(w.arn, ":stateMachine:", ":execution:", 1) + ":none")})
	var noExec *sfntypes.ExecutionDoesNotExist
	if !errors.As(err, &noExec) {
		t.Errorf("unknown execution: %v", err)
	}

	// A bad input is the execution's failure, with the cause discover gives.
	out, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Name: aws.String("bad"), Input: aws.String(`{"trigger":"manual"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Name: aws.String("bad"), Input: aws.String(`{}`)}); err == nil {
		t.Error("a second execution of the same name and another input was started")
	}
	w.finished(t, 1)
	d, err := w.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != sfntypes.ExecutionStatusFailed || aws.ToString(d.Error) != "InvalidInputError" || !strings.Contains(aws.ToString(d.Cause), "policy") {
		t.Errorf("described %s %s %s", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	if _, err := w.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn}); err == nil {
		t.Error("a finished execution was stopped")
	}

	// ListExecutions answers a malformed ARN, an unknown status and too large
	// a page as Step Functions does.
	var invalidArn *sfntypes.InvalidArn
	if _, err := w.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String("arn:foo")}); !errors.As(err, &invalidArn) {
		t.Errorf("ListExecutions of a malformed ARN: %v", err)
	}
	for name, in := range map[string]*sfn.ListExecutionsInput{
		"statusFilter": {StateMachineArn: aws.String(w.arn), StatusFilter: "DONE"},
		"maxResults":   {StateMachineArn: aws.String(w.arn), MaxResults: 1001},
	} {
		if _, err := w.sfn.ListExecutions(ctx, in); err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), name) {
			t.Errorf("ListExecutions with a bad %s: %v", name, err)
		}
	}
	// A page token stays valid when an execution starts between pages: the
	// next page neither repeats nor skips one.
	for _, n := range []string{"a", "b"} {
		if _, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Name: aws.String(n), Input: aws.String(`{"trigger":"manual"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := w.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(w.arn), MaxResults: 1})
	if err != nil || len(first.Executions) != 1 || aws.ToString(first.Executions[0].Name) != "b" || first.NextToken == nil {
		t.Fatalf("first page: %v %+v", err, first)
	}
	if _, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Name: aws.String("c"), Input: aws.String(`{"trigger":"manual"}`)}); err != nil {
		t.Fatal(err)
	}
	rest, err := w.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(w.arn), NextToken: first.NextToken})
	if err != nil || len(rest.Executions) != 2 || aws.ToString(rest.Executions[0].Name) != "a" || aws.ToString(rest.Executions[1].Name) != "bad" {
		t.Errorf("the page after the token: %v %+v; want a, bad", err, rest)
	}
	w.finished(t, 4)
}

func TestStack_StopExecutionAbortsIt(t *testing.T) {
	w := newWorld(t, nil)
	w.launch(t, map[string]string{"amirotate:policy": "web"})
	ctx := context.Background()
	input := strings.Replace(w.stack.Template().Schedules[0].Input, "<aws.scheduler.scheduled-time>", w.sim.Now().Truncate(time.Minute).Format(time.RFC3339), 1)
	out, err := w.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.arn), Input: aws.String(input)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: out.ExecutionArn, Error: aws.String("Operator"), Cause: aws.String("stopped by hand")}); err != nil {
		t.Fatal(err)
	}
	d, err := w.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != sfntypes.ExecutionStatusAborted || aws.ToString(d.Error) != "Operator" || d.StopDate == nil {
		t.Errorf("after StopExecution: %s %s %v", d.Status, aws.ToString(d.Error), d.StopDate)
	}
}
