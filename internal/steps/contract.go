package steps

import (
	"encoding/json"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

// The types in this file are the state machine's data contract: each Task's
// input and output as the ASL (statemachine/rotation.asl.json) passes them.

// DiscoverIn is the execution input as the first state hands it over, with
// the execution's start time (the default rotation time of a manual run).
type DiscoverIn struct {
	Input     json.RawMessage `json:"input"`
	StartTime time.Time       `json:"startTime"`
}

// DiscoverOut is the validated rotation and its targets in batches.
type DiscoverOut struct {
	Policy   rotation.Policy   `json:"policy"`
	Rotation rotation.Rotation `json:"rotation"`
	Batches  []BatchItem       `json:"batches"`
	// Refused are explicit instance ids that do not (or no longer) match the policy.
	Refused []rotation.Record `json:"refused"`
	// RetainOthers asks for a retention pass over the policy's images of
	// instances outside this rotation's targets (those that left the
	// selector or were terminated): true for schedule and selector runs.
	RetainOthers bool `json:"retainOthers"`
	// Targets are the instances of Batches, sorted. The state carries them
	// once, in Batches: at 10,000 instances a second copy alone would take
	// 220 KB of Step Functions' 256 KiB, so RetentionOthers reads them as
	// $.batches[*].instanceIds[*].
	Targets []string `json:"-"`
}

// BatchItem is one Map item: the instances one iteration rotates.
type BatchItem struct {
	InstanceIDs []string `json:"instanceIds"`
}

// Batch is the state of one Map iteration. snapshot, poll, copy, tag,
// publish and retention each take it and return it updated.
type Batch struct {
	Policy      rotation.Policy   `json:"policy"`
	Rotation    rotation.Rotation `json:"rotation"`
	InstanceIDs []string          `json:"instanceIds"`
	// Images are the sources and their copies, kept grouped by state.
	Images []rotation.Record `json:"images"`
	// Counts of Images by state, for the state machine's Choice and for people.
	Counts map[string]int `json:"counts,omitempty"`
	// Pending is how many images are still pending (not timed out).
	Pending int `json:"pending"`
	// ToCopy is how many copies still have to be started (missing or deferred).
	ToCopy int `json:"toCopy"`
	// WaitSeconds is the next Wait, backing off from pollIntervalSeconds.
	WaitSeconds int `json:"waitSeconds"`
	Polls       int `json:"polls"`

	// Verifications are the test boots of the batch's new images (the
	// policy's verify block); Verifying counts those not finished, and
	// Swept names test instances of earlier runs this one terminated.
	Verifications []ImageVerification `json:"verifications,omitempty"`
	Verifying     int                 `json:"verifying"`
	VerifyPolls   int                 `json:"verifyPolls,omitempty"`
	Swept         []string            `json:"swept,omitempty"`

	Published []Publication `json:"published,omitempty"`
	// Rolls are the Auto Scaling groups the roll step refreshes onto the
	// published launch template versions; Rolling counts those not finished.
	Rolls     []GroupRoll            `json:"rolls,omitempty"`
	Rolling   int                    `json:"rolling"`
	RollPolls int                    `json:"rollPolls,omitempty"`
	Retention []rotation.ScopeReport `json:"retention,omitempty"`
	Cleanup   []rotation.Record      `json:"cleanup,omitempty"` // failed images deregistered by poll
	// Scripts is the state of the policy's pre and post scripts (scripts.go).
	Scripts *ScriptsState `json:"scripts,omitempty"`
	// Error is set by the state machine's Catch: {"Error": name, "Cause": message}.
	Error *StepError `json:"error,omitempty"`
}

// ScriptsState is where the pre and post scripts of a batch are.
type ScriptsState struct {
	// Phase: "pre" until the snapshot step, then "post".
	Phase string `json:"phase"`
	// Pending is how many runs of the phase have not ended (the Choice reads it).
	Pending     int              `json:"pending"`
	WaitSeconds int              `json:"waitSeconds"`
	Instances   []ScriptInstance `json:"instances"`
}

// ScriptInstance is one instance's scripts.
type ScriptInstance struct {
	InstanceID string `json:"instanceId"`
	// Sweep is the post script of an earlier rotation that left the
	// instance frozen; the pre script waits for it.
	Sweep *ScriptRun `json:"sweep,omitempty"`
	Pre   ScriptRun  `json:"pre"`
	Post  ScriptRun  `json:"post"`
}

// ScriptRun is one script on one instance.
type ScriptRun struct {
	Status    string    `json:"status,omitempty"`
	CommandID string    `json:"commandId,omitempty"`
	Sent      time.Time `json:"sent,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// StepError is what a Catch with ResultPath $.error stores.
type StepError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// Publication is what publish did for one instance in one region.
type Publication struct {
	InstanceID      string               `json:"instanceId"`
	Region          string               `json:"region"`
	ImageID         string               `json:"imageId"`
	SSMParameter    string               `json:"ssmParameter,omitempty"`
	SSMVersion      int64                `json:"ssmVersion,omitempty"`
	LaunchTemplates []LaunchTemplateUsed `json:"launchTemplates,omitempty"`
	Changed         bool                 `json:"changed"` // false: already published (idempotent rerun)
	Error           string               `json:"error,omitempty"`
}

// LaunchTemplateUsed is a launch template version publish made the default.
type LaunchTemplateUsed struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// ImageVerification is the test boot of one new source image.
type ImageVerification struct {
	InstanceID     string    `json:"instanceId"` // the instance the image was made from
	ImageID        string    `json:"imageId"`
	TestInstanceID string    `json:"testInstanceId,omitempty"`
	State          string    `json:"state"` // Verify*
	Reason         string    `json:"reason,omitempty"`
	CommandID      string    `json:"commandId,omitempty"` // the probe's
	StartedAt      time.Time `json:"startedAt"`
	Terminated     bool      `json:"terminated,omitempty"`
	// TerminateError is the last failure to terminate the test instance.
	TerminateError    string `json:"terminateError,omitempty"`
	TerminateAttempts int    `json:"terminateAttempts,omitempty"`
}

// GroupRoll is one Auto Scaling group's instance refresh onto the launch
// template version publish made for an instance.
type GroupRoll struct {
	Group            string `json:"group"`
	Region           string `json:"region"`
	InstanceID       string `json:"instanceId"`
	LaunchTemplateID string `json:"launchTemplateId"`
	Version          int64  `json:"version"`
	// GroupVersion is the version the group launched before ("" = $Default).
	GroupVersion string    `json:"groupVersion,omitempty"`
	RefreshID    string    `json:"refreshId,omitempty"`
	Status       string    `json:"status"` // Auto Scaling's refresh status, or one of Roll*
	Percent      int       `json:"percent,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	// TriedSince is the first attempt's time: the timeout counts from it
	// while no refresh has started.
	TriedSince time.Time `json:"triedSince,omitzero"`
}

// RetentionIn is the input of the retention pass over instances outside
// this rotation's targets (see DiscoverOut.RetainOthers).
type RetentionOthersIn struct {
	Policy   rotation.Policy   `json:"policy"`
	Rotation rotation.Rotation `json:"rotation"`
	Exclude  []string          `json:"exclude"` // this rotation's targets
}

// RetentionOthersOut reports that pass.
type RetentionOthersOut struct {
	Retention []rotation.ScopeReport `json:"retention"`
	// Orphans: region → amirotate snapshots deleted because their image is gone.
	Orphans map[string][]string `json:"orphans,omitempty"`
	// OrphansFailed: snapshot id → why deleting that orphan failed (the next
	// sweep tries again).
	OrphansFailed map[string]string `json:"orphansFailed,omitempty"`
	// Error is set when the pass failed after it had deleted something:
	// the deletions above are reported, and the rotation fails.
	Error *StepError `json:"error,omitempty"`
}

// ReportIn is the report step's input: either one finished batch (the Map
// iteration's last state) or the whole rotation (after the Map).
type ReportIn struct {
	Batch *Batch `json:"batch,omitempty"`

	Rotation *rotation.Rotation  `json:"rotation,omitempty"`
	Policy   *rotation.Policy    `json:"policy,omitempty"`
	Refused  []rotation.Record   `json:"refused,omitempty"`
	Results  []BatchResult       `json:"results,omitempty"`
	Others   *RetentionOthersOut `json:"others,omitempty"`
	// OthersError is set when the pass over other instances failed for good.
	OthersError *StepError `json:"othersError,omitempty"`
}

// Instance outcomes, as BatchResult and Summary count them.
const (
	OutcomeOK       = "ok"        // new image and every copy available
	OutcomePlanned  = "planned"   // dry run: what would be made
	OutcomeFailed   = "failed"    // an image ended failed (cleaned up)
	OutcomeTimedOut = "timed-out" // an image still pending at timeoutMinutes
	OutcomeRefused  = "refused"   // not rotated: no longer matches the policy, or gone
	OutcomeError    = "error"     // an EC2 call or a step failed for good
	// OutcomeCrashConsistent: imaged although the pre script failed, as the
	// policy's scripts.onPreFailure asked (tagged amirotate:consistency=crash).
	OutcomeCrashConsistent = "crash-consistent"
)

// BatchResult is one Map iteration's compact output. Details stay in the
// iteration's own states (execution history); the Map's aggregate holds
// only this, so it stays far below 256 KiB however large the fleet.
type BatchResult struct {
	Instances        int            `json:"instances"`
	Outcomes         map[string]int `json:"outcomes"`
	ImagesCreated    int            `json:"imagesCreated"`
	CopiesCreated    int            `json:"copiesCreated"`
	ImagesFailed     int            `json:"imagesFailed"` // sources that ended failed, timed out or in error
	CopiesFailed     int            `json:"copiesFailed"`
	ImagesDeleted    int            `json:"imagesDeleted"`
	SnapshotsDeleted int            `json:"snapshotsDeleted"`
	Published        int            `json:"published"`
	GroupsRolled     int            `json:"groupsRolled,omitempty"` // Auto Scaling groups refreshed onto the new version
	RetentionFailed  int            `json:"retentionFailed"`
	// GiBAdded and GiBFreed: region → snapshot storage the new images added
	// and the deletions freed, at most (volume sizes).
	GiBAdded map[string]int `json:"gibAdded,omitempty"`
	GiBFreed map[string]int `json:"gibFreed,omitempty"`
	// Problems names every instance whose outcome is not ok, up to MaxProblems.
	Problems []Problem `json:"problems,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Problem is one instance (and region) that did not end well, and why.
type Problem struct {
	InstanceID string `json:"instanceId"`
	Region     string `json:"region,omitempty"`
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason"`
}

// Summary is what happened in the whole rotation: the execution's result
// and the detail of the EventBridge event.
type Summary struct {
	Policy           string         `json:"policy"`
	Rotation         string         `json:"rotation"`
	Trigger          string         `json:"trigger"`
	DryRun           bool           `json:"dryRun"`
	Instances        int            `json:"instances"`
	Outcomes         map[string]int `json:"outcomes"`
	ImagesCreated    int            `json:"imagesCreated"`
	CopiesCreated    int            `json:"copiesCreated"`
	ImagesFailed     int            `json:"imagesFailed"`
	CopiesFailed     int            `json:"copiesFailed"`
	ImagesDeleted    int            `json:"imagesDeleted"`
	SnapshotsDeleted int            `json:"snapshotsDeleted"`
	OrphansDeleted   int            `json:"orphanSnapshotsDeleted"`
	Published        int            `json:"published"`
	GroupsRolled     int            `json:"groupsRolled,omitempty"`
	RetentionFailed  int            `json:"retentionFailed"`
	// Cost is the snapshot storage the rotation added and freed (GiB, at
	// most) and its monthly estimate at list prices.
	Cost         rotation.CostEstimate `json:"cost"`
	Problems     []Problem             `json:"problems,omitempty"`
	MoreProblems int                   `json:"moreProblems,omitempty"`
	Failed       bool                  `json:"failed"`
	Cause        string                `json:"cause,omitempty"`
}

// ReportOut wraps the rotation summary so the state machine finds it at $.summary.
type ReportOut struct {
	Summary Summary `json:"summary"`
}
