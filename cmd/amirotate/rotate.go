package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// rotateOptions are the knobs run, demo and bench share.
type rotateOptions struct {
	Policy       rotation.Policy
	RotationTime time.Time
	InstanceIDs  []string
	Backfill     bool // a manual backfill (see rotation.Rotation.Backfill)
	// WaitMs replaces every Wait's duration (the demo and bench, where the
	// simulator's images take seconds, not minutes); nil keeps the real waits.
	WaitMs   *int
	Progress io.Writer // nil: no live progress
	// Audit receives the handlers' audit log, one JSON line per mutating
	// call; nil: dropped.
	Audit io.Writer
	// MeasureHeap runs one invocation at a time and records each one's
	// heap (lambdahost.Host.MeasureHeap): for the benchmark's probe.
	MeasureHeap bool
}

// rotationReport is what one local execution produced, for the summary
// table and --json.
type rotationReport struct {
	Summary   steps.Summary    `json:"summary"`
	Rows      []summaryRow     `json:"instances"`
	Execution *localrun.Result `json:"execution"`
}

// summaryRow is one instance in one region.
type summaryRow struct {
	InstanceID string            `json:"instanceId"`
	Region     string            `json:"region"`
	ImageID    string            `json:"imageId,omitempty"`
	State      string            `json:"state"`
	SourceID   string            `json:"sourceImageId,omitempty"`
	Published  []string          `json:"published,omitempty"`
	Deleted    []string          `json:"deleted,omitempty"`
	Kept       map[string]string `json:"kept,omitempty"`
	Failed     map[string]string `json:"retentionFailed,omitempty"`
	// KeptByRule counts kept images the retention report condensed (to
	// stay under Step Functions' payload limit) instead of listing them.
	KeptByRule int    `json:"keptByRule,omitempty"`
	Error      string `json:"error,omitempty"`
}

// executionInput is a manual run's input, as the state machine takes it.
func executionInput(o rotateOptions) ([]byte, error) {
	in := map[string]any{
		"policy":       o.Policy,
		"trigger":      rotation.TriggerManual,
		"rotationTime": o.RotationTime.UTC().Format(time.RFC3339),
	}
	if len(o.InstanceIDs) > 0 {
		in["instanceIds"] = o.InstanceIDs
	}
	if o.Backfill {
		in["backfill"] = true
	}
	return json.Marshal(in)
}

// rotate runs one rotation through the real state machine, locally: the
// node runner executes the ASL, the handlers serve its Tasks through
// lambdahost, and clients reach whatever EC2/SSM the AWS config names.
func rotate(ctx context.Context, clients *ec2x.Clients, o rotateOptions) (*rotationReport, error) {
	input, err := executionInput(o)
	if err != nil {
		return nil, err
	}
	p := newProgress(o.Progress)
	defer p.stop()
	runner, err := localrun.New(localrun.Options{
		Handlers:     localrun.StepHandlers(clients, steps.Env{Policies: rotation.PinPolicies(o.Policy), Audit: auditLogger(o.Audit)}),
		Region:       clients.Home(),
		WaitMs:       o.WaitMs,
		DetailStates: []string{"BatchReport", "Report", "RetentionOthers"},
		OnEvent:      p.event,
	})
	if err != nil {
		return nil, err
	}
	runner.Host.MeasureHeap(o.MeasureHeap)
	res, err := runner.Run(ctx, input)
	if err != nil {
		return nil, err
	}
	return buildReport(res)
}

// buildReport reads each batch's final state (the BatchReport inputs) and
// the rotation summary out of the execution.
func buildReport(res *localrun.Result) (*rotationReport, error) {
	rep := &rotationReport{Execution: res}
	for _, raw := range res.DetailInputs["BatchReport"] {
		// The state's input, before its Parameters wrap it as {"batch": ...}.
		var b steps.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("reading a batch's final state: %w", err)
		}
		rep.Rows = append(rep.Rows, batchRows(b)...)
	}
	for _, raw := range res.DetailOutputs["RetentionOthers"] {
		var st struct {
			Others steps.RetentionOthersOut `json:"others"`
		}
		if json.Unmarshal(raw, &st) == nil {
			for _, s := range st.Others.Retention {
				rep.Rows = append(rep.Rows, summaryRow{InstanceID: s.InstanceID, Region: s.Region, State: "not in this rotation",
					Deleted: s.Deleted, Kept: s.Kept, Failed: s.Failed, KeptByRule: s.KeptByRule})
			}
		}
	}
	sort.SliceStable(rep.Rows, func(i, j int) bool {
		a, b := rep.Rows[i], rep.Rows[j]
		if a.InstanceID != b.InstanceID {
			return a.InstanceID < b.InstanceID
		}
		return a.Region < b.Region
	})
	if outs := res.DetailOutputs["Report"]; len(outs) > 0 {
		var out steps.ReportOut
		if err := json.Unmarshal(outs[len(outs)-1], &out); err != nil {
			return nil, fmt.Errorf("reading the rotation summary: %w", err)
		}
		rep.Summary = out.Summary
	}
	return rep, nil
}

// batchRows joins a batch's images, publications and retention reports by
// instance and region.
func batchRows(b steps.Batch) []summaryRow {
	rows := map[[2]string]*summaryRow{}
	row := func(instance, region string) *summaryRow {
		k := [2]string{instance, region}
		if rows[k] == nil {
			rows[k] = &summaryRow{InstanceID: instance, Region: region}
		}
		return rows[k]
	}
	for _, r := range b.Images {
		x := row(r.InstanceID, r.Region)
		x.ImageID, x.State, x.SourceID, x.Error = r.ImageID, r.State, r.SourceImageID, r.Error
	}
	for _, p := range b.Published {
		x := row(p.InstanceID, p.Region)
		if p.SSMParameter != "" {
			x.Published = append(x.Published, "ssm:"+p.SSMParameter)
		}
		for _, lt := range p.LaunchTemplates {
			x.Published = append(x.Published, fmt.Sprintf("%s:v%d", lt.ID, lt.Version))
		}
		if p.Error != "" {
			x.Error = strings.TrimPrefix(x.Error+"; publish: "+p.Error, "; ")
		}
	}
	for _, s := range b.Retention {
		x := row(s.InstanceID, s.Region)
		x.Deleted, x.Kept, x.Failed, x.KeptByRule = s.Deleted, s.Kept, s.Failed, s.KeptByRule
	}
	for _, id := range b.InstanceIDs {
		if o, region, why := steps.InstanceOutcome(b, id); o != steps.OutcomeOK && o != steps.OutcomePlanned && len(b.Images) == 0 {
			x := row(id, region)
			x.State, x.Error = o, why
		}
	}
	out := make([]summaryRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	return out
}

// printReport writes the summary table and the totals.
func printReport(w io.Writer, rep *rotationReport, maxRows int) {
	s := rep.Summary
	mode := ""
	if s.DryRun {
		mode = " (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "\nRotation %s of policy %q (%s)%s\n\n", s.Rotation, s.Policy, s.Trigger, mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  INSTANCE\tREGION\tNEW IMAGE\tSTATE\tPUBLISHED\tRETENTION")
	for i, r := range rep.Rows {
		if maxRows > 0 && i == maxRows {
			fmt.Fprintf(tw, "  ... %d more rows (see --json)\n", len(rep.Rows)-maxRows)
			break
		}
		image := r.ImageID
		if r.SourceID != "" {
			image += " (copy)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.InstanceID, r.Region, dash(image), dash(r.State),
			dash(strings.Join(r.Published, " ")), retentionText(r, s.DryRun))
		if r.Error != "" {
			fmt.Fprintf(tw, "  \t└ %s\n", r.Error)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\n  instances %d: %s\n", s.Instances, outcomesText(s.Outcomes))
	fmt.Fprintf(w, "  images created %d, copies %d, published %d, images deleted %d (snapshots %d, orphan snapshots %d)\n",
		s.ImagesCreated, s.CopiesCreated, s.Published, s.ImagesDeleted, s.SnapshotsDeleted, s.OrphansDeleted)
	fmt.Fprintf(w, "  snapshot storage: %s\n", costText(s.Cost))
	if e := rep.Execution; e != nil {
		lambda := ""
		if e.Lambda.Invocations != nil { // unknown when read from a history
			lambda = fmt.Sprintf(", %d Lambda invocations", sum(e.Lambda.Invocations))
		}
		fmt.Fprintf(w, "  execution %s in %s: %d state transitions%s, largest state payload %d bytes\n",
			e.Status, e.Duration.Round(time.Millisecond), e.Transitions, lambda, e.MaxPayloadBytes)
		if !e.Succeeded() {
			fmt.Fprintf(w, "  failed: %s\n", causeText(e.Error, e.Cause))
		}
	}
}

// costText says what snapshot storage a rotation adds and frees and what
// that changes a month, naming the regions without a known price.
func costText(c rotation.CostEstimate) string {
	text := fmt.Sprintf("+%d GiB, -%d GiB at most", c.GiBAdded, c.GiBFreed)
	if len(c.Priced) > 0 {
		text += fmt.Sprintf("; in %s about +$%.2f, -$%.2f a month at list prices (%s, %s)",
			strings.Join(c.Priced, ", "), c.MonthlyUSDAdded, c.MonthlyUSDFreed, c.PriceDate, c.PriceSource)
	}
	if len(c.Unpriced) > 0 {
		text += "; no list price known for " + strings.Join(c.Unpriced, ", ") + " (its GiB are not priced)"
	}
	return text
}

func retentionText(r summaryRow, dryRun bool) string {
	var parts []string
	verb := "deleted"
	if dryRun {
		verb = "would delete"
	}
	if len(r.Deleted) > 0 {
		parts = append(parts, verb+" "+strings.Join(r.Deleted, ","))
	}
	if len(r.Kept) > 0 {
		var kept []string
		for _, id := range slices.Sorted(maps.Keys(r.Kept)) {
			kept = append(kept, id+" ("+r.Kept[id]+")")
		}
		parts = append(parts, "kept "+strings.Join(kept, ", "))
	}
	if r.KeptByRule > 0 {
		parts = append(parts, fmt.Sprintf("kept %d more by the retention rule", r.KeptByRule))
	}
	for id, e := range r.Failed {
		parts = append(parts, "FAILED "+id+": "+e)
	}
	return dash(strings.Join(parts, "; "))
}

func outcomesText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return dash(strings.Join(parts, ", "))
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// progress prints the execution as it goes: states entered and left,
// images per state, and a line at least every 30 s while nothing happens
// (Waits can be minutes long against a real account).
type progress struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
	last  time.Time
	done  chan struct{}
	state string
	// failed holds each state's latest failure, which its retry line shows.
	failed map[string]string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now(), last: time.Now(), done: make(chan struct{}), failed: map[string]string{}}
	if w != nil {
		go p.heartbeat()
	}
	return p
}

func (p *progress) stop() { close(p.done) }

func (p *progress) heartbeat() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if time.Since(p.last) >= 30*time.Second {
				p.printf("still running: last state %s", p.state)
			}
			p.mu.Unlock()
		}
	}
}

// printf needs p.mu held.
func (p *progress) printf(format string, args ...any) {
	fmt.Fprintf(p.w, "[%7s] %s\n", time.Since(p.start).Round(time.Second), fmt.Sprintf(format, args...))
	p.last = time.Now()
}

func (p *progress) event(e localrun.Event) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	where := e.State
	if e.Index != nil {
		where = fmt.Sprintf("batch %d %s", *e.Index+1, e.State)
	}
	switch e.Type {
	case "StateEntered":
		p.state = where
		if e.StateType == "Task" || e.StateType == "Map" {
			p.printf("→ %s", where)
		}
	case "StateExited":
		if e.Progress != nil && (e.State == "Snapshot" || e.State == "Poll" || e.State == "Copy") {
			pr := e.Progress
			p.printf("← %s: %s; pending %d, to copy %d, next poll in %ds", where, outcomesText(pr.Counts), pr.Pending, pr.ToCopy, pr.WaitSeconds)
		} else if e.StateType == "Task" || e.StateType == "Map" {
			p.printf("← %s", where)
		}
	case "StateFailed":
		// A retry's event carries no error: the failure just before it does.
		p.failed[where] = causeText(e.Error, e.Cause)
	case "StateRetried":
		p.printf("↻ %s retried (attempt %d): %s", where, e.Attempt, dash(p.failed[where]))
	case "StateCaught":
		p.printf("✗ %s failed: %s", where, causeText(e.Error, e.Cause))
	case "ExecutionFailed", "ExecutionSucceeded", "ExecutionAborted", "ExecutionTimeout":
		p.printf("%s", e.Type)
	}
}

// causeText is an error event's name and cause, without the name twice
// (a Lambda's cause often starts with its errorType).
func causeText(name, cause string) string {
	cause = strings.TrimPrefix(cause, name+": ")
	switch {
	case cause == "":
		return name
	case name == "":
		return cause
	}
	return name + ": " + cause
}

// auditLogger writes the audit log as JSON lines to w (nil: nowhere).
func auditLogger(w io.Writer) *slog.Logger {
	if w == nil {
		w = io.Discard
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}
