package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

// MaxProblems bounds the problems a batch result or a summary lists by
// name; the counts always cover every instance.
const MaxProblems = 100

// Report condenses a finished batch into a BatchResult, and the batch
// results of a rotation into its Summary. It calls no AWS API: the
// rotation's metrics leave as a log line in CloudWatch's embedded metric
// format (metrics.go).
type Report struct {
	// Metrics receives the rotation's metrics line; nil: none (a local run).
	Metrics io.Writer
	// Now is the clock the rotation's duration ends at (nil: time.Now).
	Now func() time.Time
}

// Handle answers a BatchResult for {"batch": ...} and a ReportOut otherwise.
func (r Report) Handle(_ context.Context, in ReportIn) (json.RawMessage, error) {
	var out any
	switch {
	case in.Batch != nil:
		out = BatchResultOf(*in.Batch)
	case in.Rotation != nil && in.Policy != nil:
		s := Summarize(in)
		if r.Metrics != nil && !s.DryRun {
			now := time.Now
			if r.Now != nil {
				now = r.Now
			}
			if err := writeMetrics(r.Metrics, s, now().Sub(in.Rotation.StartedAt), now()); err != nil {
				return nil, fmt.Errorf("writing the rotation's metrics: %w", err)
			}
		}
		out = ReportOut{Summary: s}
	default:
		return nil, rotation.Invalid("report", `input needs "batch", or "rotation" and "policy"`)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	return b, nil
}

// InstanceOutcome decides how one instance of a batch fared, from its
// records: the source image in the home region and a copy per copyTo region.
func InstanceOutcome(b Batch, instanceID string) (outcome string, region string, reason string) {
	outcome, region, reason = imageOutcome(b, instanceID)
	if b.Policy.Scripts == nil {
		return outcome, region, reason
	}
	in, _ := b.Scripts.Instance(instanceID)
	home := b.Rotation.Home
	for _, x := range []struct {
		what string
		run  *ScriptRun
	}{{"post script", &in.Post}, {"post script of an earlier rotation (sweep)", in.Sweep}} {
		if x.run == nil || x.run.Status == ScriptOK || x.run.CommandID == "" && x.run.Status == "" {
			continue
		}
		if x.what == "post script" && in.Pre.CommandID == "" {
			continue
		}
		why := fmt.Sprintf("%s %s: %s; the instance may still be frozen or quiesced (the next rotation's sweep sends it again)",
			x.what, orDefault(x.run.Status, "not sent"), x.run.Reason)
		if outcome != OutcomeOK {
			why += "; " + reason
		}
		return OutcomeError, home, why
	}
	if outcome == OutcomeOK && !b.Policy.DryRun {
		if why := in.PreFailed(); why != "" {
			return OutcomeCrashConsistent, home, why + " (scripts.onPreFailure: crash-consistent; image tagged " +
				rotation.TagConsistency + "=" + rotation.ConsistencyCrash + ")"
		}
	}
	return outcome, region, reason
}

// imageOutcome is how the instance's images fared.
func imageOutcome(b Batch, instanceID string) (outcome string, region string, reason string) {
	var source *rotation.Record
	copies := map[string]*rotation.Record{}
	for i := range b.Images {
		r := &b.Images[i]
		if r.InstanceID != instanceID {
			continue
		}
		if r.SourceImageID == "" {
			source = r
		} else {
			copies[r.Region] = r
		}
	}
	if source == nil {
		if b.Error != nil {
			return OutcomeError, b.Rotation.Home, b.Error.Error + ": " + b.Error.Cause
		}
		return OutcomeError, b.Rotation.Home, "no image was made"
	}
	if o, why := recordOutcome(*source); o != OutcomeOK {
		return o, source.Region, why
	}
	for _, t := range b.Policy.CopyTo {
		c, ok := copies[t.Region]
		if !ok {
			if b.Policy.DryRun {
				continue
			}
			if b.Error != nil {
				return OutcomeError, t.Region, b.Error.Error + ": " + b.Error.Cause
			}
			return OutcomeError, t.Region, "no copy was made"
		}
		if o, why := recordOutcome(*c); o != OutcomeOK {
			return o, c.Region, why
		}
	}
	for _, pub := range b.Published {
		if pub.InstanceID == instanceID && pub.Error != "" {
			return OutcomeError, pub.Region, "publishing " + pub.ImageID + ": " + pub.Error
		}
	}
	for _, vr := range b.Verifications {
		if vr.InstanceID == instanceID && vr.TestInstanceID != "" && !vr.Terminated {
			return OutcomeError, b.Rotation.Home, "test instance " + vr.TestInstanceID + " of " + vr.ImageID + " was not terminated (" +
				orDefault(vr.TerminateError, "the verification did not finish") + "); the next run's sweep terminates it"
		}
	}
	for _, r := range b.Rolls {
		if r.InstanceID == instanceID && !RollOK(r) && r.Status != RollPlanned {
			return OutcomeError, r.Region, "rolling Auto Scaling group " + r.Group + " onto " + r.LaunchTemplateID +
				" version " + strconv.FormatInt(r.Version, 10) + ": " + orDefault(r.Reason, "instance refresh "+r.Status)
		}
	}
	if b.Policy.DryRun {
		return OutcomePlanned, "", ""
	}
	if b.Error != nil {
		// Images are fine, but a later step (tag, publish, retention) failed.
		return OutcomeError, "", b.Error.Error + ": " + b.Error.Cause
	}
	return OutcomeOK, "", ""
}

func recordOutcome(r rotation.Record) (string, string) {
	why := r.Error
	switch r.State {
	case rotation.StateAvailable, rotation.StatePlanned:
		if why != "" {
			// Made, but marking it latest, sharing or deprecating it failed.
			return OutcomeError, why
		}
		return OutcomeOK, ""
	case rotation.StateFailed:
		return OutcomeFailed, orDefault(why, "image ended failed")
	case rotation.StateTimedOut:
		return OutcomeTimedOut, orDefault(why, "image still pending at the timeout")
	case rotation.StateRefused:
		return OutcomeRefused, orDefault(why, "instance refused")
	case rotation.StateRejected:
		return OutcomeFailed, orDefault(why, "failed verification")
	case rotation.StatePending, rotation.StateDeferred:
		return OutcomeError, "image still " + r.State + " when the batch ended"
	default:
		return OutcomeError, orDefault(why, "state "+r.State)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// BatchResultOf condenses a batch.
func BatchResultOf(b Batch) BatchResult {
	res := BatchResult{Instances: len(b.InstanceIDs), Outcomes: map[string]int{}}
	for _, id := range b.InstanceIDs {
		o, region, why := InstanceOutcome(b, id)
		res.Outcomes[o]++
		if o != OutcomeOK && o != OutcomePlanned && len(res.Problems) < MaxProblems { // crash-consistent included: reported, not failed
			res.Problems = append(res.Problems, Problem{InstanceID: id, Region: region, Outcome: o, Reason: why})
		}
	}
	for _, r := range b.Images {
		copied := r.SourceImageID != ""
		switch r.State {
		case rotation.StateAvailable:
			addGiB(&res.GiBAdded, r.Region, r.SizeGiB)
			if copied {
				res.CopiesCreated++
			} else {
				res.ImagesCreated++
			}
		case rotation.StateFailed, rotation.StateTimedOut, rotation.StateError, rotation.StateRejected:
			if copied {
				res.CopiesFailed++
			} else {
				res.ImagesFailed++
			}
		}
	}
	for _, p := range b.Published {
		if p.Changed {
			res.Published++
		}
	}
	for _, r := range b.Rolls {
		if RollOK(r) {
			res.GroupsRolled++
		}
	}
	for _, s := range b.Retention {
		res.ImagesDeleted += len(s.Deleted)
		res.SnapshotsDeleted += s.SnapshotsDeleted
		addGiB(&res.GiBFreed, s.Region, s.GiBFreed)
		// A snapshot that could not be deleted is a leak until the orphan
		// sweep gets it: it fails the rotation visibly too.
		res.RetentionFailed += len(s.Failed) + len(s.SnapshotsFailed)
	}
	if b.Error != nil {
		res.Error = b.Error.Error + ": " + b.Error.Cause
	}
	return res
}

func addGiB(m *map[string]int, region string, gib int) {
	if gib == 0 {
		return
	}
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[region] += gib
}

// Summarize adds up a rotation's batch results. The rotation failed when
// any instance did not end ok (or planned, in a dry run), when retention
// could not delete something it should, or when a batch failed.
func Summarize(in ReportIn) Summary {
	s := Summary{
		Policy:   in.Policy.Name,
		Rotation: in.Rotation.ID,
		Trigger:  in.Rotation.Trigger,
		DryRun:   in.Policy.DryRun,
		Outcomes: map[string]int{},
	}
	addProblem := func(p Problem) {
		if len(s.Problems) < MaxProblems {
			s.Problems = append(s.Problems, p)
		} else {
			s.MoreProblems++
		}
	}
	for _, r := range in.Refused {
		s.Instances++
		s.Outcomes[OutcomeRefused]++
		addProblem(Problem{InstanceID: r.InstanceID, Region: r.Region, Outcome: OutcomeRefused, Reason: r.Error})
	}
	var batchErrors []string
	var added, freed map[string]int
	for _, b := range in.Results {
		for r, g := range b.GiBAdded {
			addGiB(&added, r, g)
		}
		for r, g := range b.GiBFreed {
			addGiB(&freed, r, g)
		}
		s.Instances += b.Instances
		for o, n := range b.Outcomes {
			s.Outcomes[o] += n
		}
		s.ImagesCreated += b.ImagesCreated
		s.CopiesCreated += b.CopiesCreated
		s.ImagesFailed += b.ImagesFailed
		s.CopiesFailed += b.CopiesFailed
		s.ImagesDeleted += b.ImagesDeleted
		s.SnapshotsDeleted += b.SnapshotsDeleted
		s.Published += b.Published
		s.GroupsRolled += b.GroupsRolled
		s.RetentionFailed += b.RetentionFailed
		for _, p := range b.Problems {
			addProblem(p)
		}
		// Problems beyond a batch's own cap are still counted.
		notOK := b.Instances - b.Outcomes[OutcomeOK] - b.Outcomes[OutcomePlanned]
		if extra := notOK - len(b.Problems); extra > 0 {
			s.MoreProblems += extra
		}
		if b.Error != "" {
			batchErrors = append(batchErrors, b.Error)
		}
	}
	if in.Others != nil {
		for _, r := range in.Others.Retention {
			s.ImagesDeleted += len(r.Deleted)
			s.SnapshotsDeleted += r.SnapshotsDeleted
			addGiB(&freed, r.Region, r.GiBFreed)
			s.RetentionFailed += len(r.Failed) + len(r.SnapshotsFailed)
		}
		for _, ids := range in.Others.Orphans {
			s.OrphansDeleted += len(ids)
		}
		s.RetentionFailed += len(in.Others.OrphansFailed)
	}
	s.Cost = rotation.SnapshotPrices.EstimateCost(added, freed)
	if e := in.OthersError; e != nil {
		batchErrors = append(batchErrors, "retention of other instances: "+e.Error+": "+e.Cause)
	}
	if in.Others != nil && in.Others.Error != nil {
		batchErrors = append(batchErrors, "retention of other instances: "+in.Others.Error.Error+": "+in.Others.Error.Cause)
	}
	if s.Instances == 0 {
		// A typo in the selector, or a fleet whose tags were lost: fail
		// loudly rather than report success with nothing done.
		batchErrors = append(batchErrors, fmt.Sprintf("NoInstances: policy %s's selector %s matched no instance; nothing was imaged or pruned",
			in.Policy.Name, selectorText(in.Policy.WithDefaults().Selector)))
	}
	notOK := s.Instances - s.Outcomes[OutcomeOK] - s.Outcomes[OutcomePlanned] - s.Outcomes[OutcomeCrashConsistent]
	s.Failed = notOK > 0 || s.RetentionFailed > 0 || len(batchErrors) > 0
	if s.Failed {
		s.Cause = cause(s, notOK, batchErrors)
	}
	return s
}

func cause(s Summary, notOK int, batchErrors []string) string {
	var parts []string
	if notOK > 0 {
		var kinds []string
		for o, n := range s.Outcomes {
			if o != OutcomeOK && o != OutcomePlanned && n > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, o))
			}
		}
		sort.Strings(kinds)
		parts = append(parts, fmt.Sprintf("%d of %d instances not rotated (%s)", notOK, s.Instances, strings.Join(kinds, ", ")))
	}
	if s.RetentionFailed > 0 {
		parts = append(parts, fmt.Sprintf("retention could not delete %d images or snapshots", s.RetentionFailed))
	}
	if len(batchErrors) > 0 {
		parts = append(parts, fmt.Sprintf("%d steps failed, first: %s", len(batchErrors), batchErrors[0]))
	}
	return strings.Join(parts, "; ")
}
