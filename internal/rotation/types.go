package rotation

import "time"

// Policy is one rotation policy, as users write it (JSON, decoded strictly).
// Field names are part of the product's contract: extend, never rename.
type Policy struct {
	Name     string   `json:"name"`
	Selector Selector `json:"selector"`
	// NoReboot: nil means true (no reboot), as AWS Data Lifecycle Manager
	// defaults: a policy reboots its instances only when it says so.
	NoReboot           *bool             `json:"noReboot,omitempty"`
	CopyTo             []CopyTarget      `json:"copyTo,omitempty"`
	Retention          Retention         `json:"retention"`
	CopyRetention      *Retention        `json:"copyRetention,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	CopyInstanceTags   []string          `json:"copyInstanceTags,omitempty"`
	DeprecateAfterDays int               `json:"deprecateAfterDays,omitempty"`
	ShareWith          []string          `json:"shareWith,omitempty"`
	AllowPublic        bool              `json:"allowPublic,omitempty"`
	// ShareGraceDays: how long sharing of an expired image must have stopped
	// before an EC2 usage report made after that may prove it unused by
	// other accounts (0 = DefaultShareGraceDays).
	ShareGraceDays int `json:"shareGraceDays,omitempty"`
	// DeprecateBeforeDeleteDays: an expired image is deprecated first and
	// deregistered no sooner than this many days later (0 = not required).
	DeprecateBeforeDeleteDays int     `json:"deprecateBeforeDeleteDays,omitempty"`
	Publish                   Publish `json:"publish"`
	BatchSize                 int     `json:"batchSize,omitempty"`
	PollIntervalSeconds       int     `json:"pollIntervalSeconds,omitempty"`
	TimeoutMinutes            int     `json:"timeoutMinutes,omitempty"`
	DryRun                    bool    `json:"dryRun,omitempty"`
	// MaxDeletionsPerInstance is the circuit breaker: a retention pass that
	// would delete more images of one instance in one region (sources and
	// copies counted apart) deletes nothing and fails the rotation.
	MaxDeletionsPerInstance int     `json:"maxDeletionsPerInstance,omitempty"`
	Rebuild                 Rebuild `json:"rebuild,omitempty"`
	// Roll refreshes the Auto Scaling groups that launch the templates
	// publish moved (nil: groups are not touched).
	Roll *Roll `json:"roll,omitempty"`
	// Verify boots each new image before it is published (nil: images are
	// published unverified).
	Verify *Verify `json:"verify,omitempty"`
	// Scripts run before and after CreateImage (application-consistent images).
	Scripts *Scripts `json:"scripts,omitempty"`
}

// Rebuild governs the rotations an instance's amirotate:rebuild tag starts.
type Rebuild struct {
	// CooldownMinutes: a rebuild of an instance imaged less than this long
	// ago is refused.
	CooldownMinutes int `json:"cooldownMinutes,omitempty"`
	// Keep: how many rebuild images of an instance retention keeps. They are
	// ranked apart from the scheduled ones, so rebuilds never evict the
	// scheduled history.
	Keep int `json:"keep,omitempty"`
}

// Selector picks the instances a policy rotates: every tag must match;
// the value "*" matches any value.
type Selector struct {
	Tags map[string]string `json:"tags"`
}

// CopyTarget is a region the new images are copied into.
type CopyTarget struct {
	Region   string `json:"region"`
	KMSKeyID string `json:"kmsKeyId,omitempty"`
}

// Retention keeps the newest Keep images and/or those younger than MaxAgeDays.
type Retention struct {
	Keep       int `json:"keep,omitempty"`
	MaxAgeDays int `json:"maxAgeDays,omitempty"`
}

// Publish says where the newest image of each instance is announced.
type Publish struct {
	SSMParameter    string `json:"ssmParameter,omitempty"`
	LaunchTemplates bool   `json:"launchTemplates,omitempty"`
	// AdoptLaunchTemplates names (by id) the tracked launch templates that
	// publish may move although their current image is not one of the
	// instance's amirotate images: adopting a template is a policy decision,
	// never a tag's.
	AdoptLaunchTemplates []string `json:"adoptLaunchTemplates,omitempty"`
}

// Triggers of an execution.
const (
	TriggerSchedule  = "schedule"
	TriggerTagChange = "tag-change"
	TriggerManual    = "manual"
)

// Rotation identifies one run of a policy. Its ID is the rotation time in
// UTC to the minute (20261125T0300Z): names, tags and copy tokens derive
// from it, so a rerun of the same rotation finds what the first one made.
type Rotation struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Trigger   string    `json:"trigger"`
	StartedAt time.Time `json:"startedAt"` // execution start: poll's timeout counts from here
	Home      string    `json:"home"`      // region the source images are made in
	// Backfill (manual runs only) makes images for instances whose newest
	// image is of a later rotation, on purpose: a lost image re-made. They
	// never become latest, and retention ranks them by their time.
	Backfill bool `json:"backfill,omitempty"`
}

// Image states as records carry them. pending/available/failed are EC2's;
// the others are amirotate's own outcomes.
const (
	StatePending   = "pending"
	StateAvailable = "available"
	StateFailed    = "failed"    // ended failed in EC2; deregistered and cleaned up
	StateTimedOut  = "timed-out" // still pending after timeoutMinutes
	StateRefused   = "refused"   // instance not rotated (does not match, wrong state, gone)
	StateDeferred  = "deferred"  // copy not started yet: destination at its concurrent-copy limit
	StateError     = "error"     // an EC2 call for this item failed for good
	StatePlanned   = "planned"   // dry run: would be created
	StateRejected  = "rejected"  // failed verification (or its source did): never published
)

// Record is one image of one instance in one region, the unit that flows
// between the steps. Copies carry SourceImageID.
type Record struct {
	InstanceID    string   `json:"instanceId"`
	Region        string   `json:"region"`
	ImageID       string   `json:"imageId,omitempty"`
	Name          string   `json:"name,omitempty"`
	State         string   `json:"state"`
	SnapshotIDs   []string `json:"snapshotIds,omitempty"`
	SourceImageID string   `json:"sourceImageId,omitempty"`
	Error         string   `json:"error,omitempty"`
	// SizeGiB is the image's EBS volume size, read when it became
	// available: the most its snapshots add to storage.
	SizeGiB int `json:"sizeGiB,omitempty"`
}

// Image is a managed image as the retention planner sees it: plain data
// read from EC2 by the retention step.
type Image struct {
	ID                      string
	Region                  string
	Name                    string
	State                   string
	CreatedAt               time.Time // EC2 CreationDate
	Tags                    map[string]string
	SnapshotIDs             []string
	DeregistrationProtected bool
	// DeprecatedAt is EC2's DeprecationTime (zero: none).
	DeprecatedAt time.Time
	// Sharing: its launch permissions; nil when not read.
	Sharing *Sharing
	// SizeGiB is the size of the image's EBS volumes, what its snapshots
	// hold at most (EBS stores and bills them incrementally).
	SizeGiB int
}

// PlanInput is everything the retention planner decides from.
type PlanInput struct {
	Policy Policy
	// Now is the rotation time: ages count from it, so a rerun plans the same.
	Now time.Time
	// Images: every image the step listed in the policy's regions, including
	// images of instances outside Scope (needed to see shared snapshots).
	Images []Image
	// References: image id → what uses it ("instance i-...",
	// "launch-template lt-...:3", "ssm-parameter /a/b", "auto-scaling-group g").
	References map[string][]string
	// Scope: the instances whose images may be pruned; nil means every instance.
	Scope map[string]bool
	// Usage: image id → its usage reports, with their entries; an image
	// absent from the map has not had them read.
	Usage map[string][]UsageReport
	// UsageReadAt is when Usage was read (zero: Now): reports are judged
	// by their age then.
	UsageReadAt time.Time
	// UsageErrors: image id → why its usage reports could not be read.
	UsageErrors map[string]string
	// Hold: instance id → why none of its images may go (its new image of
	// this rotation failed or timed out).
	Hold map[string]string
}

// Decision is the plan for one image.
type Decision struct {
	ImageID    string
	Region     string
	InstanceID string
	Delete     bool
	Reason     string
	// SnapshotIDs to delete with the image: its snapshots no other image uses.
	SnapshotIDs []string
	// Needs names what the planner must be given to decide further
	// (NeedSharing, NeedUsage); the image is kept meanwhile.
	Needs string
	// What retiring a kept image does now: remove these launch
	// permissions, deprecate it at DeprecateAt, request a usage report.
	Unshare            []string
	DeprecateAt        time.Time
	RequestUsageReport bool
}

// ScopeReport is what retention did (or would do, in a dry run) for one
// instance in one region.
type ScopeReport struct {
	InstanceID       string            `json:"instanceId"`
	Region           string            `json:"region"`
	Deleted          []string          `json:"deleted,omitempty"`
	Kept             map[string]string `json:"kept,omitempty"`   // image id → reason
	Failed           map[string]string `json:"failed,omitempty"` // image id → error
	SnapshotsDeleted int               `json:"snapshotsDeleted,omitempty"`
	// GiBFreed is the volume size of the deleted images all of whose
	// snapshots were deleted: the most the deletions freed.
	GiBFreed int `json:"gibFreed,omitempty"`
	// KeptByRule counts the images kept only because the retention rule
	// keeps them (newest, within keep, within max age) and left out of Kept
	// to keep a large batch's state under Step Functions' 256 KiB.
	KeptByRule int `json:"keptByRule,omitempty"`
	// SnapshotsKept: snapshot of a deleted image → why it stays (EC2 says
	// another image still uses it).
	SnapshotsKept map[string]string `json:"snapshotsKept,omitempty"`
	// SnapshotsFailed: snapshot of a deleted image → the error deleting it
	// (the orphan sweep retries it later).
	SnapshotsFailed map[string]string `json:"snapshotsFailed,omitempty"`
}
