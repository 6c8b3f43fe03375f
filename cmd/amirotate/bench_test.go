package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		"lambda_invocations", "throttled_calls", "unrecovered_throttles", "max_state_payload_bytes", "wall_seconds", "peak_rss_bytes"} {
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
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }
	if !near(r.LowerBoundRatio, float64(r.EC2Accepted)/float64(r.LowerBoundCalls)) || r.LowerBoundRatio < 1 {
		t.Errorf("lower_bound_ratio %v; accepted %d / floor %d", r.LowerBoundRatio, r.EC2Accepted, r.LowerBoundCalls)
	}
	if !near(r.CallsPerAMI, float64(r.EC2Accepted)/float64(made)) || !near(r.TransitionsPerAMI, float64(r.Transitions)/float64(made)) {
		t.Errorf("calls_per_ami %v, transitions_per_ami %v for %d accepted calls, %d transitions, %d AMIs", r.CallsPerAMI, r.TransitionsPerAMI, r.EC2Accepted, r.Transitions, made)
	}
	if r.Transitions == 0 || r.Invocations == 0 || r.Unrecovered != 0 || r.MaxPayload <= 0 || r.MaxPayload >= 262144 || r.Wall <= 0 || r.PeakRSS <= 0 {
		t.Errorf("report %+v", r)
	}
	for _, want := range []string{"lower_bound_ratio", "transitions_per_ami", "unrecovered_throttles", "max_state_payload_bytes"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table does not show %s:\n%s", want, stdout.String())
		}
	}
	t.Logf("bench: ratio %.3f, %d transitions, %d throttled, wall %.1fs", r.LowerBoundRatio, r.Transitions, r.Throttled, r.Wall)
}
