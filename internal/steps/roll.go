package steps

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Roll moves the Auto Scaling groups that launch a template publish just
// moved onto the new version: StartInstanceRefresh with the explicit version
// in DesiredConfiguration and the policy's preferences, then, on each call
// the state machine makes after a Wait, DescribeInstanceRefreshes until the
// refresh ends. The Lambda never waits itself.
//
// A refresh that is already running on a group (someone else's) is left
// alone and reported, unless the policy's roll.cancelRunning says to cancel
// it. A refresh that fails, is cancelled or rolls back fails the instance
// with Auto Scaling's reason.
type Roll struct {
	AutoScaling ec2x.Regional[ec2x.RollAutoScaling]
	Env
}

// Roll statuses besides Auto Scaling's own (InstanceRefreshStatus).
const (
	RollToStart   = "to-start"   // found; no refresh started yet
	RollSkipped   = "skipped"    // another refresh is running; left alone
	RollCancelled = "cancelling" // cancelling another refresh (roll.cancelRunning), then starting
	RollError     = "error"      // amirotate could not start or follow it
	RollTimedOut  = "timed-out"  // still running at roll.timeoutMinutes; not cancelled
	RollPlanned   = "planned"    // dry run: a real run would refresh the group
)

// Handle starts or follows the batch's refreshes and sets b.Rolling and
// b.WaitSeconds for the state machine.
func (h *Roll) Handle(ctx context.Context, b Batch) (Batch, error) {
	return classified(h.handle(ctx, b))
}

func (h *Roll) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, h.AutoScaling, h.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = h.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	b.Policy = bc.policy
	b.Rotation.Home = bc.home
	roll := bc.policy.Roll
	if roll == nil || b.Rotation.Backfill {
		b.Rolling = 0
		return b, nil
	}
	if bc.policy.DryRun {
		// Reads only: the groups a real run would refresh, on the templates
		// publish would have moved.
		b.Rolling = 0
		if err := h.findGroups(ctx, &b); err != nil {
			return Batch{}, err
		}
		for i := range b.Rolls {
			if b.Rolls[i].Status == RollToStart {
				b.Rolls[i].Status = RollPlanned
			}
		}
		return b, nil
	}
	if b.RollPolls == 0 {
		if err := h.findGroups(ctx, &b); err != nil {
			return Batch{}, err
		}
	}
	b.RollPolls++
	now := h.now()
	byRegion := map[string][]int{}
	for i, r := range b.Rolls {
		if rollActive(r.Status) {
			byRegion[r.Region] = append(byRegion[r.Region], i)
		}
	}
	g := workers()
	for _, region := range slices.Sorted(maps.Keys(byRegion)) {
		for _, i := range byRegion[region] {
			g.Go(func() error {
				h.advance(ctx, *roll, &b.Rolls[i], now)
				return nil
			})
		}
	}
	g.Wait()
	b.Rolling = 0
	for _, r := range b.Rolls {
		if rollActive(r.Status) {
			b.Rolling++
		}
	}
	b.WaitSeconds = 0
	if b.Rolling > 0 {
		b.WaitSeconds = max(1, nextWait(bc.policy, b.RollPolls-1, now, now.Add(time.Duration(roll.TimeoutMinutes)*time.Minute)))
	}
	return b, nil
}

// findGroups lists each region's groups once and records a Roll for every
// group that launches a template publish made a version of.
func (h *Roll) findGroups(ctx context.Context, b *Batch) error {
	type target struct {
		instance string
		version  int64
	}
	byRegion := map[string]map[string]target{} // region → template id → what publish made
	for _, pub := range b.Published {
		if pub.Error != "" {
			continue // publish reported it; nothing new to roll onto
		}
		for _, lt := range pub.LaunchTemplates {
			if lt.Version == 0 && !b.Policy.DryRun {
				continue // not moved: nothing new to roll onto
			}
			if byRegion[pub.Region] == nil {
				byRegion[pub.Region] = map[string]target{}
			}
			byRegion[pub.Region][lt.ID] = target{pub.InstanceID, lt.Version}
		}
	}
	b.Rolls = []GroupRoll{}
	for _, region := range slices.Sorted(maps.Keys(byRegion)) {
		targets := byRegion[region]
		pg := autoscaling.NewDescribeAutoScalingGroupsPaginator(h.AutoScaling.In(region), &autoscaling.DescribeAutoScalingGroupsInput{MaxRecords: aws.Int32(100)})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("listing Auto Scaling groups in %s: %w", region, err)
			}
			for _, g := range page.AutoScalingGroups {
				spec, mixed := g.LaunchTemplate, false
				if spec == nil && g.MixedInstancesPolicy != nil && g.MixedInstancesPolicy.LaunchTemplate != nil {
					spec, mixed = g.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification, true
				}
				if spec == nil {
					continue
				}
				t, ok := targets[aws.ToString(spec.LaunchTemplateId)]
				if !ok {
					continue
				}
				r := GroupRoll{Group: aws.ToString(g.AutoScalingGroupName), Region: region, InstanceID: t.instance,
					LaunchTemplateID: aws.ToString(spec.LaunchTemplateId), Version: t.version,
					GroupVersion: aws.ToString(spec.Version), Status: RollToStart}
				if mixed {
					r.Status, r.Reason = RollError, "the group uses a mixed instances policy; amirotate refreshes only groups with a launch template: start its instance refresh by hand"
				}
				b.Rolls = append(b.Rolls, r)
			}
		}
	}
	sort.Slice(b.Rolls, func(i, j int) bool {
		if b.Rolls[i].Region != b.Rolls[j].Region {
			return b.Rolls[i].Region < b.Rolls[j].Region
		}
		return b.Rolls[i].Group < b.Rolls[j].Group
	})
	return nil
}

// rollActive tells whether a roll still needs a call.
func rollActive(status string) bool {
	switch status {
	case RollToStart, RollCancelled,
		string(astypes.InstanceRefreshStatusPending), string(astypes.InstanceRefreshStatusInProgress),
		string(astypes.InstanceRefreshStatusBaking), string(astypes.InstanceRefreshStatusCancelling),
		string(astypes.InstanceRefreshStatusRollbackInProgress):
		return true
	}
	return false
}

// RollOK tells whether a finished roll moved its group.
func RollOK(r GroupRoll) bool { return r.Status == string(astypes.InstanceRefreshStatusSuccessful) }

// advance moves one roll on: start (or find) its refresh, or read it.
func (h *Roll) advance(ctx context.Context, p rotation.Roll, r *GroupRoll, now time.Time) {
	cl := h.AutoScaling.In(r.Region)
	if r.TriedSince.IsZero() {
		r.TriedSince = now
	}
	if r.RefreshID == "" {
		h.start(ctx, cl, p, r, now)
	} else {
		out, err := cl.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{
			AutoScalingGroupName: aws.String(r.Group), InstanceRefreshIds: []string{r.RefreshID}})
		switch {
		case err != nil && !ec2x.IsRetryable(err):
			r.Status, r.Reason = RollError, fmt.Sprintf("reading instance refresh %s: %v", r.RefreshID, err)
		case err != nil:
			r.Reason = fmt.Sprintf("reading instance refresh %s: %v", r.RefreshID, err) // tried again next round
		case len(out.InstanceRefreshes) == 0:
			r.Status, r.Reason = RollError, fmt.Sprintf("instance refresh %s of group %s is gone", r.RefreshID, r.Group)
		default:
			follow(r, out.InstanceRefreshes[0])
		}
	}
	// The timeout counts from the refresh's start, or, while none could be
	// started (a refresh of someone else's cancelling, retried errors),
	// from the first attempt: no roll waits forever.
	since := r.StartedAt
	if since.IsZero() {
		since = r.TriedSince
	}
	if rollActive(r.Status) && now.Sub(since) > time.Duration(p.TimeoutMinutes)*time.Minute {
		if r.RefreshID == "" {
			r.Reason = fmt.Sprintf("no instance refresh could be started in %d minutes (roll.timeoutMinutes): %s", p.TimeoutMinutes, orDefault(r.Reason, r.Status))
		} else {
			r.Reason = fmt.Sprintf("instance refresh %s still %s (%d%%) after %d minutes (roll.timeoutMinutes); left running", r.RefreshID, r.Status, r.Percent, p.TimeoutMinutes)
		}
		r.Status = RollTimedOut
	}
}

// follow copies a refresh's state into the roll.
func follow(r *GroupRoll, ir astypes.InstanceRefresh) {
	r.RefreshID = aws.ToString(ir.InstanceRefreshId)
	r.Status = string(ir.Status)
	r.Percent = int(aws.ToInt32(ir.PercentageComplete))
	if ir.StartTime != nil {
		r.StartedAt = ir.StartTime.UTC()
	}
	r.Reason = ""
	switch ir.Status {
	case astypes.InstanceRefreshStatusSuccessful:
	case astypes.InstanceRefreshStatusFailed, astypes.InstanceRefreshStatusCancelled,
		astypes.InstanceRefreshStatusRollbackSuccessful, astypes.InstanceRefreshStatusRollbackFailed:
		r.Reason = fmt.Sprintf("instance refresh %s ended %s: %s", r.RefreshID, ir.Status, orDefault(aws.ToString(ir.StatusReason), "no reason given"))
	default:
		r.Reason = aws.ToString(ir.StatusReason)
	}
}

// start adopts this rotation's refresh if an earlier attempt started it,
// leaves (or cancels) someone else's, and otherwise starts one.
func (h *Roll) start(ctx context.Context, cl ec2x.RollAutoScaling, p rotation.Roll, r *GroupRoll, now time.Time) {
	version := strconv.FormatInt(r.Version, 10)
	if p.AutoRollback && !numbered(r.GroupVersion) {
		// AWS refuses it: a rollback restores the group's configuration, and
		// $Default now names the new version, so it would "roll back" onto the
		// very image that failed.
		r.Status, r.Reason = RollError, fmt.Sprintf("group %s launches the %s version of %s; autoRollback needs a numbered version "+
			"(a rollback to %s would land on the new version): set the group's launch template version to a number, or set roll.autoRollback to false",
			r.Group, orDefault(r.GroupVersion, "$Default"), r.LaunchTemplateID, orDefault(r.GroupVersion, "$Default"))
		return
	}
	out, err := cl.DescribeInstanceRefreshes(ctx, &autoscaling.DescribeInstanceRefreshesInput{AutoScalingGroupName: aws.String(r.Group), MaxRecords: aws.Int32(10)})
	if err != nil {
		r.Reason = fmt.Sprintf("reading the group's instance refreshes: %v", err) // tried again next round
		if !ec2x.IsRetryable(err) {
			r.Status = RollError
		}
		return
	}
	var running *astypes.InstanceRefresh
	for i, ir := range out.InstanceRefreshes { // newest first
		// The version did not exist before publish made it for this
		// rotation: a refresh onto it is this rotation's (a retried call's).
		if ours(ir, r.LaunchTemplateID, version) {
			follow(r, ir)
			return
		}
		if running == nil && rollActive(string(ir.Status)) {
			running = &out.InstanceRefreshes[i]
		}
	}
	if running != nil {
		id := aws.ToString(running.InstanceRefreshId)
		switch {
		case running.Status == astypes.InstanceRefreshStatusCancelling:
			r.Status, r.Reason = RollCancelled, fmt.Sprintf("waiting for instance refresh %s to finish cancelling", id)
		case !p.CancelRunning:
			r.Status, r.Reason = RollSkipped, fmt.Sprintf("group %s is already running instance refresh %s (%s, %d%%); left alone, not moved to %s version %s (set roll.cancelRunning to replace it)",
				r.Group, id, running.Status, aws.ToInt32(running.PercentageComplete), r.LaunchTemplateID, version)
		default:
			_, err := cl.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String(r.Group)})
			audit(ctx, "autoscaling:CancelInstanceRefresh", r.Region, []string{r.Group, id}, "roll.cancelRunning: replace a running refresh with one onto "+r.LaunchTemplateID+" version "+version, err)
			if err != nil && ec2x.Code(err) != "ActiveInstanceRefreshNotFound" {
				r.Reason = fmt.Sprintf("cancelling instance refresh %s: %v", id, err)
				return
			}
			r.Status, r.Reason = RollCancelled, fmt.Sprintf("cancelled instance refresh %s (roll.cancelRunning)", id)
		}
		return
	}
	in := &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(r.Group),
		Strategy:             astypes.RefreshStrategyRolling,
		DesiredConfiguration: &astypes.DesiredConfiguration{LaunchTemplate: &astypes.LaunchTemplateSpecification{
			LaunchTemplateId: aws.String(r.LaunchTemplateID), Version: aws.String(version)}},
		Preferences: refreshPreferences(p),
	}
	started, err := cl.StartInstanceRefresh(ctx, in)
	audit(ctx, "autoscaling:StartInstanceRefresh", r.Region, []string{r.Group, r.LaunchTemplateID, version}, "roll the group onto the newest image of "+r.InstanceID, err)
	switch {
	case ec2x.Code(err) == "InstanceRefreshInProgress":
		r.Reason = "a refresh started meanwhile; looked at again next round"
	case err != nil && ec2x.IsRetryable(err):
		r.Reason = fmt.Sprintf("starting an instance refresh: %v", err) // tried again next round
	case err != nil:
		r.Status, r.Reason = RollError, fmt.Sprintf("starting an instance refresh onto %s version %s: %v", r.LaunchTemplateID, version, err)
	default:
		r.RefreshID = aws.ToString(started.InstanceRefreshId)
		r.Status, r.Reason, r.StartedAt = string(astypes.InstanceRefreshStatusPending), "", now
	}
}

// ours tells whether a refresh moves its group onto template version.
func ours(ir astypes.InstanceRefresh, template, version string) bool {
	dc := ir.DesiredConfiguration
	return dc != nil && dc.LaunchTemplate != nil && aws.ToString(dc.LaunchTemplate.LaunchTemplateId) == template &&
		aws.ToString(dc.LaunchTemplate.Version) == version
}

func numbered(v string) bool {
	if v == "" {
		return false
	}
	_, err := strconv.ParseUint(v, 10, 32)
	return err == nil
}

// refreshPreferences are the policy's roll preferences as Auto Scaling
// takes them; unset ones are left to Auto Scaling's defaults.
func refreshPreferences(p rotation.Roll) *astypes.RefreshPreferences {
	pr := &astypes.RefreshPreferences{SkipMatching: aws.Bool(p.SkipsMatching())}
	if p.MinHealthyPercentage != nil {
		pr.MinHealthyPercentage = aws.Int32(int32(*p.MinHealthyPercentage))
	}
	if p.InstanceWarmupSeconds != nil {
		pr.InstanceWarmup = aws.Int32(int32(*p.InstanceWarmupSeconds))
	}
	for _, c := range p.CheckpointPercentages {
		pr.CheckpointPercentages = append(pr.CheckpointPercentages, int32(c))
	}
	if p.CheckpointDelaySeconds != nil {
		pr.CheckpointDelay = aws.Int32(int32(*p.CheckpointDelaySeconds))
	}
	if p.BakeTimeSeconds > 0 {
		pr.BakeTime = aws.Int32(int32(p.BakeTimeSeconds))
	}
	if p.AutoRollback {
		pr.AutoRollback = aws.Bool(true)
		if len(p.Alarms) > 0 {
			pr.AlarmSpecification = &astypes.AlarmSpecification{Alarms: p.Alarms}
		}
	}
	return pr
}
