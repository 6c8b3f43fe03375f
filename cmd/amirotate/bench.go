package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// benchRegions are the regions a benchmark may use: the source region
// first, then the copy regions.
var benchRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1"}

type benchConfig struct {
	instances  int
	regions    int
	batchSize  int
	timeScale  float64
	jsonFile   string
	bootstraps string
}

// benchResult is the benchmark's report; its JSON field names are a
// contract (scripts compare runs).
type benchResult struct {
	Instances             int                       `json:"instances"`
	Regions               int                       `json:"regions"`
	TimeScale             float64                   `json:"time_scale"`
	AMIsCreated           int                       `json:"amis_created"`
	CopiesCreated         int                       `json:"copies_created"`
	ImagesDeleted         int                       `json:"images_deleted"`
	EC2Calls              map[string]map[string]int `json:"ec2_calls"`
	EC2CallsTotal         int                       `json:"ec2_calls_total"`
	EC2CallsAccepted      int                       `json:"ec2_calls_accepted"`
	OtherCalls            map[string]int            `json:"other_calls"`
	CallsPerAMI           float64                   `json:"calls_per_ami"`
	LowerBoundCalls       int                       `json:"lower_bound_calls"`
	LowerBound            map[string]int            `json:"lower_bound"`
	LowerBoundRatio       float64                   `json:"lower_bound_ratio"`
	LowerBoundRatioAll    float64                   `json:"lower_bound_ratio_incl_throttled"`
	StateTransitions      int                       `json:"state_transitions"`
	TransitionsPerAMI     float64                   `json:"transitions_per_ami"`
	LambdaInvocations     int                       `json:"lambda_invocations"`
	LambdaErrors          int                       `json:"lambda_errors"`
	ThrottledCalls        int                       `json:"throttled_calls"`
	UnrecoveredThrottles  int                       `json:"unrecovered_throttles"`
	MaxStatePayloadBytes  int                       `json:"max_state_payload_bytes"`
	MaxStatePayloadState  string                    `json:"max_state_payload_state"`
	WallSeconds           float64                   `json:"wall_seconds"`
	PreviousWallSeconds   float64                   `json:"previous_rotation_wall_seconds"`
	PeakRSSBytes          int64                     `json:"peak_rss_bytes"`
	PeakRSSGoBytes        int64                     `json:"peak_rss_go_bytes"`
	PeakRSSNodeBytes      int64                     `json:"peak_rss_node_bytes"`
	ExecutionStatus       string                    `json:"execution_status"`
	ExecutionFailureCause string                    `json:"execution_failure_cause,omitempty"`

	// HistoryEvents: the execution's history as Step Functions records it
	// (quota 25,000; one execution, no children).
	HistoryEvents       int            `json:"history_events"`
	HistoryEventsByType map[string]int `json:"history_events_by_type"`
	// MakespanSeconds is the measured rotation's simulated duration (wall
	// time × time scale); MakespanFloorSeconds the shortest the same work
	// can take (benchmodel.MakespanFloor).
	MakespanSeconds      float64 `json:"makespan_seconds"`
	MakespanFloorSeconds float64 `json:"makespan_floor_seconds"`
	MakespanRatio        float64 `json:"makespan_ratio"`
	// PeakHeapBytesPerInvocation per function, from the heap probe.
	PeakHeapBytesPerInvocation map[string]uint64 `json:"peak_heap_bytes_per_invocation,omitempty"`
	// LongestInvocationSeconds per function: its longest invocation in
	// simulated seconds (wall time × time scale), against Lambda's timeout.
	LongestInvocationSeconds map[string]float64 `json:"longest_invocation_seconds"`
	// MaxMemoryUsedBytes of the invocations that grow with the fleet
	// (discover, retention-others), run in their built bootstrap: its peak
	// resident memory, Lambda's "Max Memory Used" (with --bootstraps).
	MaxMemoryUsedBytes map[string]uint64 `json:"max_memory_used_bytes,omitempty"`
	// InitMs per function: a built bootstrap's start to its first
	// invocation request (with --bootstraps).
	InitMs  map[string]float64 `json:"init_ms,omitempty"`
	CostUSD benchCost          `json:"cost_usd"`
}

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	fs := newFlagSet("bench", stderr, "Usage: amirotate bench [--instances 1000] [--regions 3] [--json FILE]\n\n"+
		"Rotates a simulated fleet twice through the real state machine (the node runner,\n"+
		"lambdahost and the embedded EC2 simulator with throttling on) and reports the\n"+
		"second rotation's cost: EC2 calls, state transitions, Lambda invocations.\n\n")
	var c benchConfig
	fs.IntVar(&c.instances, "instances", 1000, "instances in the fleet")
	fs.IntVar(&c.regions, "regions", 3, fmt.Sprintf("regions: the source and %s copy regions (2..%d)", "N-1", len(benchRegions)))
	fs.IntVar(&c.batchSize, "batch-size", 100, "the policy's batchSize")
	fs.Float64Var(&c.timeScale, "time-scale", 20, "simulated seconds per real second: image and copy latencies, EC2's token buckets and the SDK's backoff all run this much faster")
	fs.StringVar(&c.jsonFile, "json", "", "also write the result as JSON to `file`")
	fs.StringVar(&c.bootstraps, "bootstraps", "", "time the init of the bootstraps built for this machine in `dir`/<step>/bootstrap (make bootstraps-host)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.instances < 1:
		return c, errors.New("--instances must be at least 1")
	case c.regions < 2 || c.regions > len(benchRegions):
		return c, fmt.Errorf("--regions must be between 2 and %d", len(benchRegions))
	case c.timeScale < 1:
		return c, errors.New("--time-scale must be at least 1")
	}
	return c, nil
}

// scaledClock runs scale times faster than the wall clock from its start.
type scaledClock struct {
	start time.Time
	scale float64
}

func (c scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.start)) * c.scale)).UTC()
}

// scaledBackoff shortens the SDK's own backoff by the same scale, so a
// throttled call waits as long in simulated time as it would against AWS.
type scaledBackoff struct {
	inner retry.BackoffDelayer
	scale float64
}

func (b scaledBackoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	d, e := b.inner.BackoffDelay(attempt, err)
	return time.Duration(float64(d) / b.scale), e
}

func benchPolicy(c benchConfig) rotation.Policy {
	p := rotation.Policy{
		Name: "bench",

		Retention:           rotation.Retention{Keep: 1},
		DeprecateAfterDays:  30,
		Tags:                map[string]string{"Environment": "bench"},
		Publish:             rotation.Publish{SSMParameter: "/amirotate/{policy}/{instanceId}/latest", LaunchTemplates: true},
		BatchSize:           c.batchSize,
		PollIntervalSeconds: 60,
		TimeoutMinutes:      240,
	}
	for _, r := range benchRegions[1:c.regions] {
		p.CopyTo = append(p.CopyTo, rotation.CopyTarget{Region: r})
	}
	return p
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseBenchFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regions := benchRegions[:c.regions]
	simOpts := ec2sim.Options{
		Regions: regions,
		Clock:   scaledClock{start: time.Now(), scale: c.timeScale},
		// Simulated time: an 8 GiB image takes 2 minutes, an incremental
		// copy 4; a destination takes 300 concurrent copies (the current
		// documented quota).
		ImageDelay:          2 * time.Minute,
		CopyDelay:           4 * time.Minute,
		MaxConcurrentCopies: 300,
		Seed:                1,
	}
	sim, url, err := startSim(ctx, simOpts)
	if err != nil {
		return err
	}
	// The simulator enforces the synthesized roles; the steps call as them.
	iam, err := iamsim.Enforce(sim, nil)
	if err != nil {
		return err
	}
	cfg := ec2sim.AWSConfig(url, regions[0])
	clients := ec2x.NewClients(cfg, ec2x.WithBackoff(scaledBackoff{inner: retry.NewExponentialJitterBackoff(ec2x.MaxBackoff), scale: c.timeScale}),
		ec2x.WithPaceScale(c.timeScale), ec2x.WithLocalIdentities())
	var ids []string
	for i := 0; i < c.instances; i++ {
		id, err := sim.RunInstance(regions[0], ec2sim.InstanceSpec{Tags: map[string]string{
			"amirotate:policy": "bench", "Name": fmt.Sprintf("bench-%04d", i),
		}})
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	policy := benchPolicy(c)
	// Waits: a minute of simulated time, whatever poll's backoff asks for.
	waitMs := int(float64(policy.PollIntervalSeconds) * 1000 / c.timeScale)
	// Yesterday's rotation, today's a minute ago, and the heap probe's now:
	// each a later rotation than the one before, none after its start.
	now := time.Now().UTC().Truncate(time.Minute)

	fmt.Fprintf(stdout, "bench: %d instances, regions %v, time scale %gx\n", c.instances, regions, c.timeScale)
	fmt.Fprintln(stdout, "previous rotation (yesterday, throttling off) ...")
	prevStart := time.Now()
	prev, err := rotate(ctx, clients, rotateOptions{Policy: policy, RotationTime: now.Add(-24 * time.Hour), WaitMs: &waitMs})
	if err != nil {
		return err
	}
	if !prev.Execution.Succeeded() {
		return fmt.Errorf("the previous rotation failed: %s", prev.Execution.Cause)
	}
	prevWall := time.Since(prevStart)
	fmt.Fprintf(stdout, "  done in %s: %d images, %d copies\n", prevWall.Round(time.Second), prev.Summary.ImagesCreated, prev.Summary.CopiesCreated)

	sim.ResetStats()
	sim.SetThrottling(true)
	fmt.Fprintln(stdout, "measured rotation (today, EC2 throttling on) ...")
	var peak rssSampler
	var audit countingWriter
	peak.start()
	start := time.Now()
	rep, err := rotate(ctx, clients, rotateOptions{Policy: policy, RotationTime: now.Add(-time.Minute), WaitMs: &waitMs, Audit: &audit})
	wall := time.Since(start)
	peak.stop()
	if err != nil {
		return err
	}
	res := benchReport(c, policy, sim.Stats(), rep, wall, prevWall, &peak)
	res.modelReport(c, policy, simOpts, rep, wall, audit.n)
	if rep.Execution.Succeeded() {
		probe := ids[:min(len(ids), policy.BatchSize)]
		fmt.Fprintf(stdout, "heap probe (one batch of %d, one invocation at a time) ...\n", len(probe))
		var built func(string, any) (uint64, error)
		if c.bootstraps != "" {
			built = func(step string, payload any) (uint64, error) {
				return measureBuilt(ctx, c.bootstraps, url, regions[0], policy, step, payload)
			}
		}
		if res.PeakHeapBytesPerInvocation, res.MaxMemoryUsedBytes, err = probeHeap(ctx, clients, policy, probe, now, &waitMs, built); err != nil {
			return err
		}
	}
	if c.bootstraps != "" {
		fmt.Fprintf(stdout, "init of the bootstraps in %s ...\n", c.bootstraps)
		if res.InitMs, err = measureInits(ctx, c.bootstraps, policy, regions[0]); err != nil {
			return err
		}
	}
	printBench(stdout, res)
	printModel(stdout, res)
	if c.jsonFile != "" {
		if err := writeJSON(c.jsonFile, res); err != nil {
			return err
		}
	}
	if !rep.Execution.Succeeded() {
		return fmt.Errorf("the measured rotation failed: %s", rep.Execution.Cause)
	}
	return iam.DenialsError()
}

// lowerBound is the floor of mutating EC2 calls the rotation needs: one
// CreateImage per instance, one CopyImage per copy, one DeregisterImage per
// expired image (its snapshots go with it) and one EnableImageDeprecation
// per new image when the policy deprecates (plus sharing calls per image
// when it shares).
func lowerBound(p rotation.Policy, s steps.Summary) map[string]int {
	made := s.ImagesCreated + s.CopiesCreated
	lb := map[string]int{
		"CreateImage":     s.ImagesCreated,
		"CopyImage":       s.CopiesCreated,
		"DeregisterImage": s.ImagesDeleted,
	}
	if p.DeprecateAfterDays > 0 {
		lb["EnableImageDeprecation"] = made
	}
	if len(p.ShareWith) > 0 {
		lb["ModifyImageAttribute"] = made
	}
	return lb
}

func benchReport(c benchConfig, p rotation.Policy, st ec2sim.Stats, rep *rotationReport, wall, prevWall time.Duration, peak *rssSampler) benchResult {
	s := rep.Summary
	res := benchResult{
		Instances: c.instances, Regions: c.regions, TimeScale: c.timeScale,
		AMIsCreated: s.ImagesCreated, CopiesCreated: s.CopiesCreated, ImagesDeleted: s.ImagesDeleted,
		EC2Calls: map[string]map[string]int{}, OtherCalls: map[string]int{},
		ThrottledCalls:       st.Throttled,
		StateTransitions:     rep.Execution.Transitions,
		LambdaInvocations:    sum(rep.Execution.Lambda.Invocations),
		LambdaErrors:         sum(rep.Execution.Lambda.Errors),
		MaxStatePayloadBytes: rep.Execution.MaxPayloadBytes,
		MaxStatePayloadState: rep.Execution.MaxPayloadState,
		WallSeconds:          wall.Seconds(),
		PreviousWallSeconds:  prevWall.Seconds(),
		ExecutionStatus:      rep.Execution.Status,
	}
	if !rep.Execution.Succeeded() {
		res.ExecutionFailureCause = rep.Execution.Cause
	}
	for region, actions := range st.Calls {
		for action, n := range actions {
			if strings.Contains(action, ":") { // ssm:..., autoscaling:...
				res.OtherCalls[action] += n
				continue
			}
			if res.EC2Calls[region] == nil {
				res.EC2Calls[region] = map[string]int{}
			}
			res.EC2Calls[region][action] += n
			res.EC2CallsTotal += n
		}
	}
	res.EC2CallsAccepted = res.EC2CallsTotal - st.Throttled
	res.LowerBound = lowerBound(p, s)
	res.LowerBoundCalls = sum(res.LowerBound)
	made := s.ImagesCreated + s.CopiesCreated
	if made > 0 {
		res.CallsPerAMI = float64(res.EC2CallsAccepted) / float64(made)
		res.TransitionsPerAMI = float64(res.StateTransitions) / float64(made)
	}
	if res.LowerBoundCalls > 0 {
		res.LowerBoundRatio = float64(res.EC2CallsAccepted) / float64(res.LowerBoundCalls)
		res.LowerBoundRatioAll = float64(res.EC2CallsTotal) / float64(res.LowerBoundCalls)
	}
	// A throttle the SDK could not absorb surfaces as a failed Lambda
	// invocation or as an item's error; either counts as unrecovered.
	res.UnrecoveredThrottles = res.LambdaErrors
	for _, r := range rep.Rows {
		if strings.Contains(r.Error, "RequestLimitExceeded") {
			res.UnrecoveredThrottles++
		}
	}
	res.PeakRSSGoBytes, res.PeakRSSNodeBytes = peak.goPeak, peak.childPeak
	res.PeakRSSBytes = peak.goPeak + peak.childPeak
	return res
}

func printBench(w io.Writer, r benchResult) {
	fmt.Fprintf(w, "\n%-34s %v\n", "instances × regions", fmt.Sprintf("%d × %d", r.Instances, r.Regions))
	row := func(k string, v any) { fmt.Fprintf(w, "%-34s %v\n", k, v) }
	row("execution", r.ExecutionStatus)
	row("amis_created / copies_created", fmt.Sprintf("%d / %d", r.AMIsCreated, r.CopiesCreated))
	row("images_deleted", r.ImagesDeleted)
	row("ec2_calls (accepted / incl. throttled)", fmt.Sprintf("%d / %d", r.EC2CallsAccepted, r.EC2CallsTotal))
	row("lower_bound_calls", fmt.Sprintf("%d %v", r.LowerBoundCalls, r.LowerBound))
	row("lower_bound_ratio (target ≤ 1.15)", fmt.Sprintf("%.3f (incl. throttled %.3f)", r.LowerBoundRatio, r.LowerBoundRatioAll))
	row("calls_per_ami", fmt.Sprintf("%.2f", r.CallsPerAMI))
	row("state_transitions", r.StateTransitions)
	row("transitions_per_ami (target ≤ 1)", fmt.Sprintf("%.3f", r.TransitionsPerAMI))
	row("lambda_invocations", r.LambdaInvocations)
	row("throttled_calls", r.ThrottledCalls)
	row("unrecovered_throttles (target 0)", r.UnrecoveredThrottles)
	row("max_state_payload_bytes (< 262144)", fmt.Sprintf("%d (%s)", r.MaxStatePayloadBytes, r.MaxStatePayloadState))
	row("wall_seconds", fmt.Sprintf("%.1f (previous rotation %.1f)", r.WallSeconds, r.PreviousWallSeconds))
	row("peak_rss_bytes (go + node)", fmt.Sprintf("%d (%d + %d)", r.PeakRSSBytes, r.PeakRSSGoBytes, r.PeakRSSNodeBytes))
	fmt.Fprintln(w, "\nEC2 calls by action (all regions, incl. throttled):")
	byAction := map[string]int{}
	for _, actions := range r.EC2Calls {
		for a, n := range actions {
			byAction[a] += n
		}
	}
	// Most called first; equal counts by name, so the table is stable.
	mostCalled := func(a, b string) int { return cmp.Or(cmp.Compare(byAction[b], byAction[a]), strings.Compare(a, b)) }
	for _, a := range slices.SortedFunc(maps.Keys(byAction), mostCalled) {
		fmt.Fprintf(w, "  %-32s %6d\n", a, byAction[a])
	}
}

// rssSampler records the peak resident set of this process and of the node
// runner it starts. getrusage's ru_maxrss covers this process and waited-for
// children; while node runs, /proc is sampled for it.
type rssSampler struct {
	goPeak, childPeak int64
	done              chan struct{}
	wg                sync.WaitGroup
}

func (s *rssSampler) start() {
	s.done = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				if n := childrenRSS(); n > s.childPeak {
					s.childPeak = n
				}
			}
		}
	}()
}

func (s *rssSampler) stop() {
	close(s.done)
	s.wg.Wait()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.goPeak = ru.Maxrss * 1024
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil && ru.Maxrss*1024 > s.childPeak {
		s.childPeak = ru.Maxrss * 1024
	}
}

// childrenRSS sums the resident set of this process's direct children.
func childrenRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", os.Getpid(), os.Getpid()))
	if err != nil {
		return 0
	}
	var total int64
	for _, field := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			continue
		}
		if n, err := lambdahost.PeakRSS(pid); err == nil {
			total += int64(n)
		}
	}
	return total
}
