package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/amirotate/amirotate/internal/benchmodel"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/lambdahost"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
	"github.com/amirotate/amirotate/statemachine"
)

// benchCost is the measured rotation's bill and the per-image design's for
// the same work, at benchmodel.ListPrices.
type benchCost struct {
	Prices      benchmodel.Prices `json:"prices"`
	Usage       benchmodel.Usage  `json:"usage"`
	PerRotation benchmodel.Bill   `json:"per_rotation"`
	Per1000AMIs benchmodel.Bill   `json:"per_1000_amis"`
	PerImage    perImageCost      `json:"per_image_design"`
	// PerImageOverOurs: how many times more the per-image design costs.
	PerImageOverOurs float64 `json:"per_image_over_ours"`
}

type perImageCost struct {
	benchmodel.PerImageCost
	PerRotation benchmodel.Bill `json:"per_rotation"`
	Per1000AMIs benchmodel.Bill `json:"per_1000_amis"`
}

// benchWork is the measured rotation's EC2 work for the makespan floor and
// the per-image design.
func benchWork(p rotation.Policy, so ec2sim.Options, s steps.Summary, regions int) benchmodel.Work {
	return benchmodel.Work{
		Instances:           s.ImagesCreated,
		CopyRegions:         len(p.CopyTo),
		DeletedPerRegion:    s.ImagesDeleted / regions,
		Deprecate:           p.DeprecateAfterDays > 0,
		ImageDelay:          so.ImageDelay,
		CopyDelay:           so.CopyDelay,
		MaxConcurrentCopies: so.MaxConcurrentCopies,
	}
}

// modelReport adds the history, the makespan against its floor and the
// bill to a benchmark result. Lambda's billed time is the handlers' local
// running time times the time scale: they mostly wait on EC2's paced
// buckets, which run that much faster here (their CPU time is scaled too,
// so the figure leans high).
func (r *benchResult) modelReport(c benchConfig, p rotation.Policy, so ec2sim.Options, rep *rotationReport, wall time.Duration, auditBytes int) {
	ex := rep.Execution
	r.HistoryEvents = ex.History.Events
	r.HistoryEventsByType = ex.History.ByType
	work := benchWork(p, so, rep.Summary, c.regions)
	r.MakespanSeconds = wall.Seconds() * c.timeScale
	r.MakespanFloorSeconds = benchmodel.MakespanFloor(work).Seconds()
	if r.MakespanFloorSeconds > 0 {
		r.MakespanRatio = r.MakespanSeconds / r.MakespanFloorSeconds
	}

	u := benchmodel.Usage{Transitions: ex.Transitions + ex.Retries, Lambda: map[string]benchmodel.LambdaUse{},
		Events: len(ex.Events), Schedules: 1}
	invocations := 0
	r.LongestInvocationSeconds = map[string]float64{}
	for name, n := range ex.Lambda.Invocations {
		step := strings.TrimPrefix(name, statemachine.FunctionNamePrefix)
		r.LongestInvocationSeconds[step] = ex.Lambda.LongestSeconds[name] * c.timeScale
		u.Lambda[step] = benchmodel.LambdaUse{Invocations: n, Seconds: ex.Lambda.Seconds[name] * c.timeScale,
			MemoryMB: benchmodel.FunctionMemoryMB[step]}
		invocations += n
	}
	u.LogBytes = float64(ex.History.Events*benchmodel.StateMachineLogBytesPerEvent+
		invocations*benchmodel.LambdaPlatformLogBytes) + float64(auditBytes)
	amis := float64(rep.Summary.ImagesCreated + rep.Summary.CopiesCreated)
	prices := benchmodel.ListPrices
	cost := benchCost{Prices: prices, Usage: u, PerRotation: prices.Bill(u)}
	pi := benchmodel.DefaultPerImageDesign.Usage(work)
	cost.PerImage = perImageCost{PerImageCost: pi, PerRotation: prices.Bill(pi.Usage)}
	if amis > 0 {
		cost.Per1000AMIs = cost.PerRotation.Scale(1000 / amis)
		cost.PerImage.Per1000AMIs = cost.PerImage.PerRotation.Scale(1000 / amis)
	}
	if cost.PerRotation.Total > 0 {
		cost.PerImageOverOurs = cost.PerImage.PerRotation.Total / cost.PerRotation.Total
	}
	r.CostUSD = cost
}

// probeHeap measures every function's heap per invocation (see
// lambdahost.HeapDuring), one invocation at a time: a rotation of one batch
// (ids, the policy's batch size) through the state machine, then the two
// invocations whose work grows with the fleet rather than the batch,
// discover over the whole selector and retention over every other image of
// the policy. The embedded simulator serves their calls in the same heap,
// so its allocations count too: the figures lean high. built, when set,
// runs those two invocations again in a built bootstrap of their function
// and returns its peak resident memory (see measureBuilt).
func probeHeap(ctx context.Context, clients *ec2x.Clients, p rotation.Policy, ids []string, at time.Time, waitMs *int,
	built func(step string, payload any) (uint64, error)) (heap, maxMemory map[string]uint64, err error) {
	rep, err := rotate(ctx, clients, rotateOptions{Policy: p, RotationTime: at, InstanceIDs: ids, WaitMs: waitMs, MeasureHeap: true})
	if err != nil {
		return nil, nil, err
	}
	if !rep.Execution.Succeeded() {
		return nil, nil, fmt.Errorf("the heap probe's rotation failed: %s", rep.Execution.Cause)
	}
	heap = map[string]uint64{}
	for name, n := range rep.Execution.Lambda.PeakHeapBytes {
		heap[strings.TrimPrefix(name, statemachine.FunctionNamePrefix)] = n
	}
	env := steps.Env{Policies: rotation.PinPolicies(p)}
	input, err := json.Marshal(map[string]any{"policy": p, "trigger": rotation.TriggerManual, "rotationTime": at.Format(time.RFC3339)})
	if err != nil {
		return nil, nil, err
	}
	discoverIn := steps.DiscoverIn{Input: input, StartTime: time.Now()}
	var out steps.DiscoverOut
	discover := steps.NewDiscover(clients.As(ec2x.StepDiscover), env)
	n := lambdahost.HeapDuring(func() { out, err = discover.Handle(ctx, discoverIn) })
	if err != nil {
		return nil, nil, fmt.Errorf("the heap probe's discover: %w", err)
	}
	heap[ec2x.StepDiscover] = max(heap[ec2x.StepDiscover], n)
	othersIn := steps.RetentionOthersIn{Policy: out.Policy, Rotation: out.Rotation, Exclude: out.Targets}
	others, err := json.Marshal(othersIn)
	if err != nil {
		return nil, nil, err
	}
	retention := steps.NewRetention(clients.As(ec2x.StepRetention), env)
	n = lambdahost.HeapDuring(func() { _, err = retention.Invoke(ctx, others) })
	if err != nil {
		return nil, nil, fmt.Errorf("the heap probe's retention of other instances: %w", err)
	}
	heap[ec2x.StepRetention] = max(heap[ec2x.StepRetention], n)
	heap[retentionOthers] = n
	if built == nil {
		return heap, nil, nil
	}
	maxMemory = map[string]uint64{}
	if maxMemory[ec2x.StepDiscover], err = built(ec2x.StepDiscover, discoverIn); err != nil {
		return nil, nil, err
	}
	if maxMemory[retentionOthers], err = built(ec2x.StepRetention, othersIn); err != nil {
		return nil, nil, err
	}
	return heap, maxMemory, nil
}

// retentionOthers names retention's pass over the policy's other instances
// among the per-function figures.
const retentionOthers = "retention-others"

// measureBuilt invokes the built bootstrap of step (dir/<step>/bootstrap)
// once with payload, as Lambda would: its own process, the simulator at url
// reached through the environment, the step's local identity. It returns
// the process's peak resident memory, which is what Lambda's "Max Memory
// Used" reports and holds against the memory the stack gives the function;
// the simulator's allocations are not in it.
func measureBuilt(ctx context.Context, dir, url, region string, p rotation.Policy, step string, payload any) (uint64, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return 0, err
	}
	env := bootstrapEnv(ec2sim.EnvVars(url, region), p, "AWS_ACCESS_KEY_ID="+ec2x.LocalAccessKey(step))
	got, err := lambdahost.InvokeBuilt(ctx, filepath.Join(dir, step, "bootstrap"), env, raw, 15*time.Minute)
	if err != nil {
		return 0, err
	}
	if got.Failed {
		return 0, fmt.Errorf("the built %s function failed: %s", step, got.Response)
	}
	return got.MaxMemoryUsed, nil
}

// bootstrapEnv is a built function's environment: base, its access key
// (replacing base's), and the policy pinned as the stack pins it.
func bootstrapEnv(base []string, p rotation.Policy, accessKey string) []string {
	env := slices.DeleteFunc(slices.Clone(base), func(kv string) bool { return strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") })
	return append(env, accessKey, rotation.PinsEnv+"="+rotation.PinPolicies(p).String())
}

// initRuns is how many cold starts of each bootstrap the benchmark times.
const initRuns = 5

// measureInits times each function's init (lambdahost.MeasureInit), the
// median of initRuns cold starts, from dir/<step>/bootstrap.
func measureInits(ctx context.Context, dir string, p rotation.Policy, region string) (map[string]float64, error) {
	env := bootstrapEnv([]string{"AWS_REGION=" + region, "AWS_SECRET_ACCESS_KEY=bench"}, p, "AWS_ACCESS_KEY_ID=bench")
	out := map[string]float64{}
	for _, step := range ec2x.Steps {
		bin := filepath.Join(dir, step, "bootstrap")
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("no bootstrap for %s in %s: build them with `make bootstraps-host`", step, dir)
		}
		var runs []time.Duration
		for range initRuns {
			d, err := lambdahost.MeasureInit(ctx, bin, env)
			if err != nil {
				return nil, err
			}
			runs = append(runs, d)
		}
		slices.Sort(runs)
		out[step] = float64(runs[len(runs)/2].Microseconds()) / 1000
	}
	return out, nil
}

// countingWriter counts the bytes written to it (the audit log's volume).
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

// byName lists a map's entries sorted by key, "k v" each.
func byName[V any](m map[string]V, format func(V) string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+format(m[k]))
	}
	return strings.Join(parts, ", ")
}

func printModel(w io.Writer, r benchResult) {
	row := func(k string, v any) { fmt.Fprintf(w, "%-34s %v\n", k, v) }
	row("history_events (≤ 25,000)", fmt.Sprintf("%d (%.0f%% of the quota)", r.HistoryEvents, 100*float64(r.HistoryEvents)/localrun.MaxHistoryEvents))
	row("makespan_seconds (simulated)", fmt.Sprintf("%.0f, floor %.0f", r.MakespanSeconds, r.MakespanFloorSeconds))
	row("makespan_ratio (target ≤ 1.25)", fmt.Sprintf("%.3f", r.MakespanRatio))
	if len(r.PeakHeapBytesPerInvocation) > 0 {
		row("peak_heap_per_invocation (≤ 64 MiB)", byName(r.PeakHeapBytesPerInvocation, func(n uint64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }))
	}
	if len(r.LongestInvocationSeconds) > 0 {
		row("longest invocation, s (≤ 900)", byName(r.LongestInvocationSeconds, func(s float64) string { return fmt.Sprintf("%.0f", s) }))
	}
	if len(r.MaxMemoryUsedBytes) > 0 {
		row("max_memory_used, built (≤ 64 MiB)", byName(r.MaxMemoryUsedBytes, func(n uint64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }))
	}
	if len(r.InitMs) > 0 {
		row("init_ms (≤ 50)", byName(r.InitMs, func(ms float64) string { return fmt.Sprintf("%.1f", ms) }))
	}
	c := r.CostUSD
	bill := func(b benchmodel.Bill) string {
		return fmt.Sprintf("$%.4f (step functions %.4f, lambda %.4f + %.4f requests, eventbridge %.6f, logs %.4f)",
			b.Total, b.StepFunctions, b.LambdaDuration, b.LambdaRequests, b.EventBridge, b.Logs)
	}
	row("cost_usd per rotation", bill(c.PerRotation))
	row("cost_usd per 1,000 AMIs", bill(c.Per1000AMIs))
	row("per-image design per 1,000 AMIs", bill(c.PerImage.Per1000AMIs))
	row("per-image design / ours (≥ 10)", fmt.Sprintf("%.0f× (%d executions, %d transitions)", c.PerImageOverOurs, c.PerImage.Executions, c.PerImage.Usage.Transitions))
}
