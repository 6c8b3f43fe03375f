package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// TestBench_SmallFleetReportsEveryFieldConsistently runs `amirotate bench`
// end to end on a small fleet (the real state machine, node runner,
// lambdahost and the embedded simulator with throttling on) and checks the
// JSON report: every field the benchmark issue asks for is there, the
// counts are those of the rotation it ran (keep 1, so the second rotation
// deletes every image of the first), and the derived numbers follow from the
// raw ones.
func TestBench_SmallFleetReportsEveryFieldConsistently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const instances, regions = 24, 3
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, []string{"--instances", "24", "--regions", "3", "--batch-size", "10", "--time-scale", "120", "--json", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"instances", "regions", "amis_created", "copies_created", "images_deleted", "ec2_calls",
		"calls_per_ami", "lower_bound_calls", "lower_bound_ratio", "state_transitions", "transitions_per_ami",
		"lambda_invocations", "throttled_calls", "unrecovered_throttles", "max_state_payload_bytes", "wall_seconds", "peak_rss_bytes",
		"history_events", "makespan_floor_seconds", "makespan_ratio", "peak_heap_bytes_per_invocation", "longest_invocation_seconds", "cost_usd"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	var r struct {
		Instances         int                       `json:"instances"`
		Regions           int                       `json:"regions"`
		AMIs              int                       `json:"amis_created"`
		Copies            int                       `json:"copies_created"`
		Deleted           int                       `json:"images_deleted"`
		EC2Calls          map[string]map[string]int `json:"ec2_calls"`
		EC2Total          int                       `json:"ec2_calls_total"`
		EC2Accepted       int                       `json:"ec2_calls_accepted"`
		CallsPerAMI       float64                   `json:"calls_per_ami"`
		LowerBound        map[string]int            `json:"lower_bound"`
		LowerBoundCalls   int                       `json:"lower_bound_calls"`
		LowerBoundRatio   float64                   `json:"lower_bound_ratio"`
		Transitions       int                       `json:"state_transitions"`
		TransitionsPerAMI float64                   `json:"transitions_per_ami"`
		Invocations       int                       `json:"lambda_invocations"`
		Throttled         int                       `json:"throttled_calls"`
		Unrecovered       int                       `json:"unrecovered_throttles"`
		MaxPayload        int                       `json:"max_state_payload_bytes"`
		Wall              float64                   `json:"wall_seconds"`
		PeakRSS           int64                     `json:"peak_rss_bytes"`
		Status            string                    `json:"execution_status"`
		History           int                       `json:"history_events"`
		HistoryByType     map[string]int            `json:"history_events_by_type"`
		Makespan          float64                   `json:"makespan_seconds"`
		Floor             float64                   `json:"makespan_floor_seconds"`
		MakespanRatio     float64                   `json:"makespan_ratio"`
		Heap              map[string]uint64         `json:"peak_heap_bytes_per_invocation"`
		Cost              struct {
			PerRotation struct {
				Total         float64
				StepFunctions float64 `json:"step_functions"`
			} `json:"per_rotation"`
			Per1000  struct{ Total float64 } `json:"per_1000_amis"`
			PerImage struct {
				PerRotation struct{ Total float64 } `json:"per_rotation"`
			} `json:"per_image_design"`
			Ratio float64 `json:"per_image_over_ours"`
		} `json:"cost_usd"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	made := instances * regions
	if r.Instances != instances || r.Regions != regions || r.Status != "SUCCEEDED" {
		t.Fatalf("report %+v", r)
	}
	if r.AMIs != instances || r.Copies != instances*(regions-1) || r.Deleted != made {
		t.Errorf("amis %d copies %d deleted %d; want %d, %d, %d", r.AMIs, r.Copies, r.Deleted, instances, instances*(regions-1), made)
	}
	// The floor: CreateImage per instance, CopyImage per copy,
	// DeregisterImage per expired image, EnableImageDeprecation per new image
	// (the bench policy deprecates).
	want := map[string]int{"CreateImage": instances, "CopyImage": instances * (regions - 1), "DeregisterImage": made, "EnableImageDeprecation": made}
	total := 0
	for k, v := range want {
		total += v
		if r.LowerBound[k] != v {
			t.Errorf("lower_bound[%s] = %d, want %d", k, r.LowerBound[k], v)
		}
	}
	if r.LowerBoundCalls != total {
		t.Errorf("lower_bound_calls %d, want %d", r.LowerBoundCalls, total)
	}
	// ec2_calls by region and action adds up, and holds at least the floor.
	sum, byAction := 0, map[string]int{}
	for region, actions := range r.EC2Calls {
		for a, n := range actions {
			sum += n
			byAction[a] += n
			if strings.Contains(a, ":") {
				t.Errorf("ec2_calls[%s] has a non-EC2 action %s", region, a)
			}
		}
	}
	if len(r.EC2Calls) != regions || sum != r.EC2Total || r.EC2Accepted != r.EC2Total-r.Throttled {
		t.Errorf("ec2_calls over %d regions sum to %d; total %d, accepted %d, throttled %d", len(r.EC2Calls), sum, r.EC2Total, r.EC2Accepted, r.Throttled)
	}
	for k, v := range want {
		if byAction[k] < v {
			t.Errorf("%s called %d times, below the floor %d: the counts cannot be of this rotation", k, byAction[k], v)
		}
	}
	if !near(r.LowerBoundRatio, float64(r.EC2Accepted)/float64(r.LowerBoundCalls)) || r.LowerBoundRatio < 1 {
		t.Errorf("lower_bound_ratio %v; accepted %d / floor %d", r.LowerBoundRatio, r.EC2Accepted, r.LowerBoundCalls)
	}
	if !near(r.CallsPerAMI, float64(r.EC2Accepted)/float64(made)) || !near(r.TransitionsPerAMI, float64(r.Transitions)/float64(made)) {
		t.Errorf("calls_per_ami %v, transitions_per_ami %v for %d accepted calls, %d transitions, %d AMIs", r.CallsPerAMI, r.TransitionsPerAMI, r.EC2Accepted, r.Transitions, made)
	}
	if r.Transitions == 0 || r.Invocations == 0 || r.Unrecovered != 0 || r.MaxPayload <= 0 || r.MaxPayload >= 262144 || r.Wall <= 0 || r.PeakRSS <= 0 {
		t.Errorf("report %+v", r)
	}
	// The history: every transition enters and exits a state (≥ 2 events),
	// and the events by type add up.
	byType := 0
	for _, n := range r.HistoryByType {
		byType += n
	}
	if r.History < 2*r.Transitions || byType != r.History || r.HistoryByType["ExecutionStarted"] != 1 {
		t.Errorf("history_events %d (by type %d) for %d transitions", r.History, byType, r.Transitions)
	}
	// The makespan is the wall time at the time scale, against a floor of
	// at least a source's and a copy's latency (2 + 4 simulated minutes).
	if !near(r.Makespan, r.Wall*120) || r.Floor < 360 || !near(r.MakespanRatio, r.Makespan/r.Floor) {
		t.Errorf("makespan %v (wall %v × 120), floor %v, ratio %v", r.Makespan, r.Wall, r.Floor, r.MakespanRatio)
	}
	for _, step := range []string{"discover", "snapshot", "poll", "copy", "tag", "publish", "retention", "report"} {
		if _, ok := r.Heap[step]; !ok {
			t.Errorf("no peak heap for %s: %v", step, r.Heap)
		}
	}
	c := r.Cost
	if c.PerRotation.StepFunctions <= 0 || !near(c.Per1000.Total, c.PerRotation.Total*1000/float64(made)) ||
		!near(c.Ratio, c.PerImage.PerRotation.Total/c.PerRotation.Total) {
		t.Errorf("cost %+v", c)
	}
	for _, want := range []string{"lower_bound_ratio", "transitions_per_ami", "unrecovered_throttles", "max_state_payload_bytes",
		"history_events", "makespan_ratio", "peak_heap_per_invocation", "cost_usd per 1,000 AMIs", "per-image design"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table does not show %s:\n%s", want, stdout.String())
		}
	}
	t.Logf("bench: ratio %.3f, %d transitions, %d throttled, wall %.1fs", r.LowerBoundRatio, r.Transitions, r.Throttled, r.Wall)
}

// The model fields follow from the execution: history, makespan over its
// floor, and the bill, by hand.
func TestModelReport_DerivesFromTheExecution(t *testing.T) {
	p := benchPolicy(benchConfig{regions: 3, batchSize: 100})
	p.DeprecateAfterDays = 30
	so := ec2sim.Options{ImageDelay: 2 * time.Minute, CopyDelay: 4 * time.Minute, MaxConcurrentCopies: 300}
	rep := &rotationReport{
		Summary: steps.Summary{ImagesCreated: 50, CopiesCreated: 100, ImagesDeleted: 150},
		Execution: &localrun.Result{
			Transitions: 40, Retries: 2,
			History: &localrun.History{Events: 200, ByType: map[string]int{"ExecutionStarted": 1}},
			Events:  []localrun.PutEvent{{}},
			Lambda: lambdahost.Stats{
				Invocations:    map[string]int{"amirotate-copy": 4, "amirotate-retention": 2},
				Seconds:        map[string]float64{"amirotate-copy": 1.5, "amirotate-retention": 0.5},
				LongestSeconds: map[string]float64{"amirotate-copy": 0.75, "amirotate-retention": 0.25},
			},
		},
	}
	var r benchResult
	r.modelReport(benchConfig{regions: 3, timeScale: 20}, p, so, rep, 30*time.Second, 1000)
	// 50 instances fit every bucket: the floor is 2 + 4 minutes.
	if r.HistoryEvents != 200 || r.MakespanSeconds != 600 || r.MakespanFloorSeconds != 360 || !near(r.MakespanRatio, 600.0/360) {
		t.Errorf("history %d, makespan %v, floor %v, ratio %v", r.HistoryEvents, r.MakespanSeconds, r.MakespanFloorSeconds, r.MakespanRatio)
	}
	// The longest invocations, in simulated seconds, against Lambda's timeout.
	if r.LongestInvocationSeconds["copy"] != 15 || r.LongestInvocationSeconds["retention"] != 5 {
		t.Errorf("longest invocations %v", r.LongestInvocationSeconds)
	}
	u := r.CostUSD.Usage
	if u.Transitions != 42 || u.Lambda["copy"].Seconds != 30 || u.Lambda["copy"].MemoryMB != 256 || u.Lambda["retention"].MemoryMB != 512 {
		t.Errorf("usage %+v", u)
	}
	// Logs: 200 history events × 300 B, 6 invocations × 600 B, 1,000 B of audit lines.
	if u.LogBytes != 200*300+6*600+1000 || u.Events != 1 || u.Schedules != 1 {
		t.Errorf("logs %v B, events %d, schedules %d", u.LogBytes, u.Events, u.Schedules)
	}
	b := r.CostUSD.PerRotation
	want := 42*0.025/1000 + 6*0.2/1e6 + (30*0.25+10*0.5)*0.0000133334 + 2*1e-6 + u.LogBytes/(1<<30)*0.5
	if !near(b.Total, want) || !near(r.CostUSD.Per1000AMIs.Total, want*1000/150) {
		t.Errorf("bill %+v, want total %v", b, want)
	}
	if pi := r.CostUSD.PerImage; pi.Executions != 150 || !near(r.CostUSD.PerImageOverOurs, pi.PerRotation.Total/b.Total) {
		t.Errorf("per-image design %+v", pi)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }

// The two invocations that grow with the fleet run in their built
// bootstraps against the simulator (its IAM enforced, each function with
// its own identity), and do their work there: discover lists the fleet,
// retention's others pass lists the policy's images, and each reports its
// process's peak memory.
func TestMeasureBuilt_RunsTheBuiltFunctionsAgainstTheSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two functions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, step := range []string{"discover", "retention"} {
		build := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", filepath.Join(dir, step, "bootstrap"), "./functions/"+step)
		build.Dir = "../.."
		build.Env = append(build.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", step, err, out)
		}
	}
	regions := benchRegions[:2]
	sim, url, err := startSim(ctx, ec2sim.Options{Regions: regions})
	if err != nil {
		t.Fatal(err)
	}
	iam, err := iamsim.Enforce(sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := sim.RunInstance(regions[0], ec2sim.InstanceSpec{Tags: map[string]string{"amirotate:policy": "bench"}}); err != nil {
			t.Fatal(err)
		}
	}
	p := benchPolicy(benchConfig{regions: 2, batchSize: 100})
	now := time.Now().UTC().Truncate(time.Minute)
	input, _ := json.Marshal(map[string]any{"policy": p, "trigger": rotation.TriggerManual, "rotationTime": now.Format(time.RFC3339)})
	discoverIn := steps.DiscoverIn{Input: input, StartTime: now}
	clients := ec2x.NewClients(ec2sim.AWSConfig(url, regions[0]), ec2x.WithLocalIdentities())
	out, err := steps.NewDiscover(clients.As(ec2x.StepDiscover), steps.Env{Policies: rotation.PinPolicies(p)}).Handle(ctx, discoverIn)
	if err != nil || len(out.Targets) != 3 {
		t.Fatalf("discover in process: %v, %v", out.Targets, err)
	}

	sim.ResetStats()
	for step, payload := range map[string]any{
		"discover":  discoverIn,
		"retention": steps.RetentionOthersIn{Policy: out.Policy, Rotation: out.Rotation, Exclude: out.Targets},
	} {
		peak, err := measureBuilt(ctx, dir, url, regions[0], p, step, payload)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if peak < 1<<20 || peak > 256<<20 {
			t.Errorf("%s: max memory used %d bytes", step, peak)
		}
		t.Logf("%s: max memory used %.1f MiB", step, float64(peak)/(1<<20))
	}
	calls := sim.Stats().Calls
	if calls[regions[0]]["DescribeInstances"] == 0 || calls[regions[0]]["DescribeImages"] == 0 || calls[regions[1]]["DescribeImages"] == 0 {
		t.Errorf("the built functions did not call the simulator as they should: %v", calls)
	}
	if err := iam.DenialsError(); err != nil {
		t.Error(err)
	}
}
