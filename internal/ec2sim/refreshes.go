package ec2sim

import (
	"fmt"
	"slices"
	"time"
)

// Auto Scaling instance refreshes: StartInstanceRefresh,
// DescribeInstanceRefreshes and CancelInstanceRefresh as the API reference
// describes them
// (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StartInstanceRefresh.html,
// .../API_DescribeInstanceRefreshes.html, .../API_CancelInstanceRefresh.html).
//
// Groups launch no instances here, so a refresh is a timeline computed when
// it starts and read against the clock, like an image's pending time: it
// stays Pending for Options.RefreshDelay (30 s), then replaces the group's desired
// capacity in rounds of (100 − MinHealthyPercentage)% (at least one
// instance), each round lasting InstanceWarmup, pausing CheckpointDelay at
// each checkpoint below 100%, then Baking for BakeTime, and ends
// Successful; only then does the group take the desired configuration
// ("Once the instance refresh succeeds, Amazon EC2 Auto Scaling updates the
// settings of the Auto Scaling group"). A refresh scripted to fail
// (FailNextInstanceRefresh) ends Failed at the percentage given, or, with
// AutoRollback, goes RollbackInProgress and ends RollbackSuccessful with
// the group's configuration unchanged.

const (
	// refreshCancelTime is how long Cancelling lasts (the replacements in
	// flight finish first).
	refreshCancelTime = time.Minute
	// defaultInstanceWarmup is the group's health check grace period,
	// which is InstanceWarmup's default.
	defaultInstanceWarmup   = 300
	defaultMinHealthy       = 90
	defaultCheckpointDelay  = 3600
	maxRefreshDelaySeconds  = 172800
	refreshesKeptPerGroup   = 50
	statusRefreshPending    = "Pending"
	statusRefreshInProgress = "InProgress"
	statusRefreshBaking     = "Baking"
	statusRefreshSuccessful = "Successful"
	statusRefreshFailed     = "Failed"
	statusRefreshCancelling = "Cancelling"
	statusRefreshCancelled  = "Cancelled"
	statusRollbackRunning   = "RollbackInProgress"
	statusRollbackDone      = "RollbackSuccessful"
	statusRollbackFailed    = "RollbackFailed"
)

// ltRef is a launch template as a group or a desired configuration names it.
type ltRef struct{ id, name, version string }

type refreshPrefs struct {
	minHealthy, maxHealthy        int
	hasMaxHealthy                 bool
	warmup                        int
	hasWarmup                     bool
	checkpoints                   []int
	checkpointDelay               int
	hasCheckpointDelay            bool
	skipMatching, autoRollback    bool
	alarms                        []string
	bakeTime                      int
	scaleInProtected, standbyPref string
}

// refreshStep is one point of a refresh's timeline.
type refreshStep struct {
	at       time.Time
	status   string
	percent  int
	toUpdate int
	reason   string
}

type instanceRefresh struct {
	seq      uint64
	id       string
	group    string
	strategy string
	prefs    refreshPrefs
	desired  *ltRef
	steps    []refreshStep // in time order; the last one is final
	applied  bool          // the group took the desired configuration
}

// refreshScript makes the next refresh of a group fail.
type refreshScript struct {
	atPercent int
	reason    string
	// rollbackFails makes an auto rollback end RollbackFailed.
	rollbackFails bool
}

// FailNextInstanceRefresh makes the next instance refresh started on group
// in region fail once it has replaced atPercent of the instances, with
// reason as its StatusReason: Failed, or with AutoRollback
// RollbackInProgress then RollbackSuccessful. This is how an instance
// refresh fails in AWS when new instances fail their health checks or an
// alarm of the AlarmSpecification goes into ALARM.
func (s *Sim) FailNextInstanceRefresh(regionName, group string, atPercent int, reason string) error {
	return s.scriptRefresh(regionName, group, refreshScript{atPercent: atPercent, reason: reason})
}

// FailNextInstanceRefreshRollback is FailNextInstanceRefresh whose auto
// rollback fails too (RollbackFailed).
func (s *Sim) FailNextInstanceRefreshRollback(regionName, group string, atPercent int, reason string) error {
	return s.scriptRefresh(regionName, group, refreshScript{atPercent: atPercent, reason: reason, rollbackFails: true})
}

func (s *Sim) scriptRefresh(regionName, group string, sc refreshScript) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.region(regionName)
	if err != nil {
		return fmt.Errorf("%s", err.Message)
	}
	if sc.atPercent < 0 || sc.atPercent > 100 {
		return fmt.Errorf("atPercent %d: want 0-100", sc.atPercent)
	}
	if sc.reason == "" {
		sc.reason = "Instance refresh failed: new instances did not pass their health checks."
	}
	if r.refreshScripts == nil {
		r.refreshScripts = map[string]refreshScript{}
	}
	r.refreshScripts[group] = sc
	return nil
}

// at is the refresh's state at now.
func (ir *instanceRefresh) at(now time.Time) refreshStep {
	cur := ir.steps[0]
	for _, st := range ir.steps[1:] {
		if st.at.After(now) {
			break
		}
		cur = st
	}
	return cur
}

func (ir *instanceRefresh) started() time.Time { return ir.steps[0].at }

// ended is the time the refresh reached its final status, if it has.
func (ir *instanceRefresh) ended(now time.Time) (time.Time, bool) {
	last := ir.steps[len(ir.steps)-1]
	if refreshActive(last.status) || last.at.After(now) {
		return time.Time{}, false
	}
	return last.at, true
}

func refreshActive(status string) bool {
	switch status {
	case statusRefreshPending, statusRefreshInProgress, statusRefreshBaking, statusRefreshCancelling, statusRollbackRunning:
		return true
	}
	return false
}

// plan computes a refresh's timeline from its start.
func (ir *instanceRefresh) plan(start time.Time, pending time.Duration, toUpdate int, script *refreshScript) {
	p := ir.prefs
	t := start
	ir.steps = []refreshStep{{at: t, status: statusRefreshPending, toUpdate: toUpdate}}
	t = t.Add(pending)
	ir.steps = append(ir.steps, refreshStep{at: t, status: statusRefreshInProgress, toUpdate: toUpdate})
	warm := time.Duration(p.warmup) * time.Second
	per := toUpdate - toUpdate*p.minHealthy/100 // instances replaced per round
	if per < 1 {
		per = 1
	}
	done, pct, rounds := 0, 0, 0
	if toUpdate == 0 {
		pct = 100
	}
	checkpoints := slices.Clone(p.checkpoints)
	for pct < 100 {
		done = min(toUpdate, done+per)
		t = t.Add(warm)
		pct = done * 100 / toUpdate
		if script != nil && pct >= script.atPercent {
			ir.fail(t, done, toUpdate, rounds+1, script)
			return
		}
		rounds++
		ir.steps = append(ir.steps, refreshStep{at: t, status: statusRefreshInProgress, percent: pct, toUpdate: toUpdate - done})
		for len(checkpoints) > 0 && pct >= checkpoints[0] {
			if checkpoints[0] < 100 {
				t = t.Add(time.Duration(p.checkpointDelay) * time.Second)
			}
			checkpoints = checkpoints[1:]
		}
	}
	if script != nil { // fails at 100%: the last instances never became healthy
		ir.fail(t, toUpdate, toUpdate, rounds, script)
		return
	}
	if p.bakeTime > 0 {
		ir.steps = append(ir.steps, refreshStep{at: t, status: statusRefreshBaking, percent: 100})
		t = t.Add(time.Duration(p.bakeTime) * time.Second)
	}
	ir.steps = append(ir.steps, refreshStep{at: t, status: statusRefreshSuccessful, percent: 100})
}

// fail ends the timeline at t with done of toUpdate instances replaced in
// rounds rounds.
func (ir *instanceRefresh) fail(t time.Time, done, toUpdate, rounds int, sc *refreshScript) {
	pct := 0
	if toUpdate > 0 {
		pct = done * 100 / toUpdate
	}
	if !ir.prefs.autoRollback {
		ir.steps = append(ir.steps, refreshStep{at: t, status: statusRefreshFailed, percent: pct, toUpdate: toUpdate - done, reason: sc.reason})
		return
	}
	// The rollback replaces the instances replaced so far, at the same pace.
	ir.steps = append(ir.steps, refreshStep{at: t, status: statusRollbackRunning, percent: pct, toUpdate: toUpdate - done, reason: sc.reason})
	t = t.Add(time.Duration(max(1, rounds)) * time.Duration(ir.prefs.warmup) * time.Second)
	end := statusRollbackDone
	if sc.rollbackFails {
		end = statusRollbackFailed
	}
	ir.steps = append(ir.steps, refreshStep{at: t, status: end, percent: pct, toUpdate: toUpdate - done,
		reason: "Instance refresh rolled back: " + sc.reason})
}

// cancel cuts the timeline at now: Cancelling, then Cancelled.
func (ir *instanceRefresh) cancel(now time.Time) {
	cur := ir.at(now)
	kept := ir.steps[:0]
	for _, st := range ir.steps {
		if !st.at.After(now) {
			kept = append(kept, st)
		}
	}
	ir.steps = append(kept,
		refreshStep{at: now, status: statusRefreshCancelling, percent: cur.percent, toUpdate: cur.toUpdate, reason: "Instance refresh is being cancelled."},
		refreshStep{at: now.Add(refreshCancelTime), status: statusRefreshCancelled, percent: cur.percent, toUpdate: cur.toUpdate, reason: "The instance refresh was cancelled."})
}

// settleRefreshes gives each group whose refresh succeeded by now its
// desired configuration. Reads of groups call it first.
func (r *region) settleRefreshes(now time.Time) {
	for name, irs := range r.refreshes {
		g, ok := r.asgs[name]
		if !ok {
			continue
		}
		for _, ir := range irs {
			if ir.applied || ir.desired == nil || ir.at(now).status != statusRefreshSuccessful {
				continue
			}
			ir.applied = true
			g.ltID, g.ltName, g.ltVersion = ir.desired.id, ir.desired.name, ir.desired.version
			g.lcName = ""
		}
	}
}

func (r *region) activeRefresh(group string, now time.Time) *instanceRefresh {
	for _, ir := range r.refreshes[group] {
		if refreshActive(ir.at(now).status) {
			return ir
		}
	}
	return nil
}

func (s *Sim) asStartInstanceRefresh(c *call) *apiError {
	p := c.p
	name := p.str("AutoScalingGroupName")
	g, ok := c.r.asgs[name]
	if !ok {
		return asValidation("AutoScalingGroup name not found - AutoScalingGroup %s not found", name)
	}
	strategy := p.str("Strategy")
	if strategy == "" {
		strategy = "Rolling"
	}
	if strategy != "Rolling" {
		return asValidation("1 validation error detected: Value '%s' at 'strategy' failed to satisfy constraint: Member must satisfy enum value set: [Rolling]", strategy)
	}
	prefs, err := refreshPreferences(p)
	if err != nil {
		return err
	}
	var desired *ltRef
	if p.has("DesiredConfiguration.LaunchTemplate.LaunchTemplateId") || p.has("DesiredConfiguration.LaunchTemplate.LaunchTemplateName") {
		pre := "DesiredConfiguration.LaunchTemplate."
		lt, err := c.r.templateByRef(p.str(pre+"LaunchTemplateId"), p.str(pre+"LaunchTemplateName"))
		if err != nil {
			return asValidation("%s", err.Message)
		}
		ver := p.str(pre + "Version")
		if _, err := lt.version(ver); err != nil {
			return asValidation("%s", err.Message)
		}
		desired = &ltRef{id: lt.id, name: lt.name, version: ver}
	}
	// "A rollback is not supported in the following situations: There is no
	// desired configuration specified for the instance refresh. [...] The
	// Auto Scaling group uses the launch template's $Latest or $Default
	// version." (API_RollbackInstanceRefresh, RefreshPreferences.AutoRollback;
	// https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html:
	// "You can only roll back to a previous version of a launch template if
	// the version is a specific numbered version.")
	if prefs.autoRollback {
		switch {
		case desired == nil:
			return asValidation("Auto rollback requires a desired configuration for the instance refresh.")
		case g.ltID == "":
			return asValidation("Auto rollback is not supported for an Auto Scaling group that uses a launch configuration.")
		case !numberedVersion(g.ltVersion):
			return asValidation("Auto rollback is not supported because the Auto Scaling group %s uses the %s version of launch template %s; specify a numbered launch template version on the group.", name, versionLabel(g.ltVersion), g.ltID)
		case !numberedVersion(desired.version):
			return asValidation("Auto rollback is not supported when the desired configuration uses the %s version of launch template %s; specify a numbered version.", versionLabel(desired.version), desired.id)
		}
	} else if len(prefs.alarms) > 0 {
		return asValidation("AlarmSpecification can only be specified when AutoRollback is enabled.")
	}
	if ir := c.r.activeRefresh(name, c.now); ir != nil {
		return errorf("InstanceRefreshInProgress", "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.")
	}
	toUpdate := g.desired
	if prefs.skipMatching && desired != nil && g.ltID == desired.id && resolveVersion(c.r, g.ltID, g.ltVersion) == resolveVersion(c.r, desired.id, desired.version) {
		toUpdate = 0 // every instance already launches the desired version
	}
	ir := &instanceRefresh{seq: s.nextSeq(), id: uuidFor(s), group: name, strategy: strategy, prefs: prefs, desired: desired}
	var script *refreshScript
	if sc, ok := c.r.refreshScripts[name]; ok {
		script = &sc
		delete(c.r.refreshScripts, name)
	}
	ir.plan(c.now, s.opts.RefreshDelay, toUpdate, script)
	if c.r.refreshes == nil {
		c.r.refreshes = map[string][]*instanceRefresh{}
	}
	irs := append([]*instanceRefresh{ir}, c.r.refreshes[name]...) // newest first, as Describe lists them
	if len(irs) > refreshesKeptPerGroup {
		irs = irs[:refreshesKeptPerGroup]
	}
	c.r.refreshes[name] = irs
	c.w.el("InstanceRefreshId", ir.id)
	return nil
}

func numberedVersion(v string) bool {
	if v == "" || v == "$Latest" || v == "$Default" {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func versionLabel(v string) string {
	if v == "" {
		return "$Default"
	}
	return v
}

// resolveVersion is the version number a reference launches now (0 if none).
func resolveVersion(r *region, ltID, ver string) int {
	lt, ok := r.templates[ltID]
	if !ok {
		return 0
	}
	v, err := lt.version(ver)
	if err != nil {
		return 0
	}
	return v.number
}

func uuidFor(s *Sim) string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a), uint16(a>>32), uint16(a>>48)&0xfff, uint16(b)&0x3fff|0x8000, b>>16&0xffffffffffff)
}

// refreshPreferences reads and validates Preferences.* (ranges from
// API_RefreshPreferences).
func refreshPreferences(p params) (refreshPrefs, *apiError) {
	pr := refreshPrefs{minHealthy: defaultMinHealthy, warmup: defaultInstanceWarmup, checkpointDelay: defaultCheckpointDelay}
	const pre = "Preferences."
	intPref := func(name string, lo, hi int, dst *int, present *bool) *apiError {
		v, ok, err := p.integer(pre + name)
		if err != nil {
			return asValidation("%s", err.Message)
		}
		if !ok {
			return nil
		}
		if v < lo || v > hi {
			return asValidation("1 validation error detected: Value '%d' at 'preferences.%s' failed to satisfy constraint: Member must have value between %d and %d", v, lowerFirst(name), lo, hi)
		}
		*dst = v
		if present != nil {
			*present = true
		}
		return nil
	}
	for _, f := range []struct {
		name    string
		lo, hi  int
		dst     *int
		present *bool
	}{
		{"MinHealthyPercentage", 0, 100, &pr.minHealthy, nil},
		{"MaxHealthyPercentage", 100, 200, &pr.maxHealthy, &pr.hasMaxHealthy},
		{"InstanceWarmup", 0, maxRefreshDelaySeconds, &pr.warmup, &pr.hasWarmup},
		{"CheckpointDelay", 0, maxRefreshDelaySeconds, &pr.checkpointDelay, &pr.hasCheckpointDelay},
		{"BakeTime", 0, maxRefreshDelaySeconds, &pr.bakeTime, nil},
	} {
		if err := intPref(f.name, f.lo, f.hi, f.dst, f.present); err != nil {
			return pr, err
		}
	}
	if pr.hasMaxHealthy && pr.maxHealthy-pr.minHealthy > 100 {
		return pr, asValidation("The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater than 100.")
	}
	prev := 0
	for _, s := range p.members(pre + "CheckpointPercentages") {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 || n > 100 {
			return pr, asValidation("Checkpoint percentages must be integers between 1 and 100.")
		}
		if n <= prev {
			return pr, asValidation("Checkpoint percentages must be in ascending order.")
		}
		prev = n
		pr.checkpoints = append(pr.checkpoints, n)
	}
	if pr.hasCheckpointDelay && len(pr.checkpoints) == 0 {
		return pr, asValidation("CheckpointDelay can only be specified with CheckpointPercentages.")
	}
	var err *apiError
	if pr.skipMatching, err = p.boolean(pre + "SkipMatching"); err != nil {
		return pr, asValidation("%s", err.Message)
	}
	if pr.autoRollback, err = p.boolean(pre + "AutoRollback"); err != nil {
		return pr, asValidation("%s", err.Message)
	}
	pr.alarms = p.members(pre + "AlarmSpecification.Alarms")
	pr.scaleInProtected = p.str(pre + "ScaleInProtectedInstances")
	pr.standbyPref = p.str(pre + "StandbyInstances")
	return pr, nil
}

func (s *Sim) asDescribeInstanceRefreshes(c *call) *apiError {
	p := c.p
	name := p.str("AutoScalingGroupName")
	if name == "" {
		return asValidation("1 validation error detected: Value null at 'autoScalingGroupName' failed to satisfy constraint: Member must not be null")
	}
	c.r.settleRefreshes(c.now)
	want := set(p.members("InstanceRefreshIds")...)
	var items []*instanceRefresh
	for _, ir := range c.r.refreshes[name] {
		if len(want) == 0 || want[ir.id] {
			items = append(items, ir)
		}
	}
	limit, _, err := p.integer("MaxRecords")
	if err != nil {
		return err
	}
	if limit <= 0 || limit > 100 {
		limit = 50
	}
	page, next, err := paginateList(items, func(*instanceRefresh) bool { return true }, "refreshes", p.str("NextToken"), limit)
	if err != nil {
		return asValidation("%s", err.Message)
	}
	w := c.w
	w.open("InstanceRefreshes")
	for _, ir := range page {
		st := ir.at(c.now)
		w.open("member")
		w.el("InstanceRefreshId", ir.id)
		w.el("AutoScalingGroupName", ir.group)
		w.el("Status", st.status)
		w.opt("StatusReason", st.reason)
		w.el("StartTime", fmtTime(ir.started()))
		if end, ok := ir.ended(c.now); ok {
			w.el("EndTime", fmtTime(end))
		}
		w.integer("PercentageComplete", st.percent)
		w.integer("InstancesToUpdate", st.toUpdate)
		w.open("Preferences")
		w.integer("MinHealthyPercentage", ir.prefs.minHealthy)
		if ir.prefs.hasMaxHealthy {
			w.integer("MaxHealthyPercentage", ir.prefs.maxHealthy)
		}
		if ir.prefs.hasWarmup {
			w.integer("InstanceWarmup", ir.prefs.warmup)
		}
		if len(ir.prefs.checkpoints) > 0 {
			w.open("CheckpointPercentages")
			for _, n := range ir.prefs.checkpoints {
				w.integer("member", n)
			}
			w.close("CheckpointPercentages")
			w.integer("CheckpointDelay", ir.prefs.checkpointDelay)
		}
		w.boolean("SkipMatching", ir.prefs.skipMatching)
		w.boolean("AutoRollback", ir.prefs.autoRollback)
		if len(ir.prefs.alarms) > 0 {
			w.open("AlarmSpecification")
			w.open("Alarms")
			for _, a := range ir.prefs.alarms {
				w.el("member", a)
			}
			w.close("Alarms")
			w.close("AlarmSpecification")
		}
		w.el("ScaleInProtectedInstances", orDefault(ir.prefs.scaleInProtected, "Ignore"))
		w.el("StandbyInstances", orDefault(ir.prefs.standbyPref, "Ignore"))
		w.integer("BakeTime", ir.prefs.bakeTime)
		w.close("Preferences")
		if ir.desired != nil {
			w.open("DesiredConfiguration")
			w.open("LaunchTemplate")
			w.el("LaunchTemplateId", ir.desired.id)
			w.el("LaunchTemplateName", ir.desired.name)
			w.opt("Version", ir.desired.version)
			w.close("LaunchTemplate")
			w.close("DesiredConfiguration")
		}
		w.el("Strategy", ir.strategy)
		w.close("member")
	}
	w.close("InstanceRefreshes")
	w.opt("NextToken", next)
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Sim) asCancelInstanceRefresh(c *call) *apiError {
	name := c.p.str("AutoScalingGroupName")
	if _, ok := c.r.asgs[name]; !ok {
		return asValidation("AutoScalingGroup name not found - AutoScalingGroup %s not found", name)
	}
	ir := c.r.activeRefresh(name, c.now)
	if ir == nil || ir.at(c.now).status == statusRefreshCancelling {
		return errorf("ActiveInstanceRefreshNotFound", "No in progress or pending Instance Refresh found for Auto Scaling group %s", name)
	}
	ir.cancel(c.now)
	c.w.el("InstanceRefreshId", ir.id)
	return nil
}
