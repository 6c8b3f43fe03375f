package rotation

import (
	"fmt"
	"unicode/utf8"
)

// Roll moves the Auto Scaling groups that launch a template publish just
// moved onto the new version with an instance refresh
// (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StartInstanceRefresh.html).
// The preferences are passed to Auto Scaling as they are; unset ones take
// Auto Scaling's defaults.
type Roll struct {
	// MinHealthyPercentage of the group stays in service during the
	// refresh (Auto Scaling's default: 90).
	MinHealthyPercentage *int `json:"minHealthyPercentage,omitempty"`
	// InstanceWarmupSeconds before a new instance counts as healthy
	// (default: the group's health check grace period).
	InstanceWarmupSeconds *int `json:"instanceWarmupSeconds,omitempty"`
	// CheckpointPercentages pause the refresh at these percentages for
	// CheckpointDelaySeconds (default 3600).
	CheckpointPercentages  []int `json:"checkpointPercentages,omitempty"`
	CheckpointDelaySeconds *int  `json:"checkpointDelaySeconds,omitempty"`
	// BakeTimeSeconds the refresh waits after the last replacement before
	// it counts as successful (a rollback stays possible meanwhile).
	BakeTimeSeconds int `json:"bakeTimeSeconds,omitempty"`
	// SkipMatching (default true) leaves instances that already launch the
	// new version alone.
	SkipMatching *bool `json:"skipMatching,omitempty"`
	// AutoRollback lets Auto Scaling roll the group back when the refresh
	// fails or one of Alarms goes into ALARM.
	AutoRollback bool     `json:"autoRollback,omitempty"`
	Alarms       []string `json:"alarms,omitempty"`
	// CancelRunning cancels a refresh that is already running on a group
	// (someone else's) and starts amirotate's; by default such a group is
	// left alone and reported.
	CancelRunning bool `json:"cancelRunning,omitempty"`
	// TimeoutMinutes a refresh may run before the rotation reports it as
	// timed out (it is not cancelled). Default 240.
	TimeoutMinutes int `json:"timeoutMinutes,omitempty"`
}

// Bounds of Roll, from the API reference's RefreshPreferences.
const (
	DefaultRollTimeoutMinutes = 240
	MaxRefreshDelaySeconds    = 172800
	MaxRefreshAlarms          = 10
	maxAlarmName              = 255
)

// SkipsMatching tells whether the refresh skips instances already on the
// new version (the default).
func (r Roll) SkipsMatching() bool { return r.SkipMatching == nil || *r.SkipMatching }

func checkRoll(ps *problems, field string, p Policy) {
	r := p.Roll
	if r == nil {
		return
	}
	if !p.Publish.LaunchTemplates {
		ps.add(field, "rolls groups onto the launch template versions publish makes; set publish.launchTemplates: true")
	}
	if v := r.MinHealthyPercentage; v != nil && (*v < 0 || *v > 100) {
		ps.add(field+".minHealthyPercentage", "is %d; set 0 to 100", *v)
	}
	if v := r.InstanceWarmupSeconds; v != nil && (*v < 0 || *v > MaxRefreshDelaySeconds) {
		ps.add(field+".instanceWarmupSeconds", "is %d; set 0 to %d (48 hours)", *v, MaxRefreshDelaySeconds)
	}
	prev := 0
	for i, c := range r.CheckpointPercentages {
		f := fmt.Sprintf("%s.checkpointPercentages[%d]", field, i)
		switch {
		case c < 1 || c > 100:
			ps.add(f, "is %d; set 1 to 100", c)
		case c <= prev:
			ps.add(f, "is %d after %d; list checkpoints in ascending order", c, prev)
		}
		prev = c
	}
	if v := r.CheckpointDelaySeconds; v != nil {
		switch {
		case *v < 0 || *v > MaxRefreshDelaySeconds:
			ps.add(field+".checkpointDelaySeconds", "is %d; set 0 to %d (48 hours)", *v, MaxRefreshDelaySeconds)
		case len(r.CheckpointPercentages) == 0:
			ps.add(field+".checkpointDelaySeconds", "is set without checkpointPercentages; add checkpoints (e.g. [50, 100]) or remove it")
		}
	}
	if r.BakeTimeSeconds < 0 || r.BakeTimeSeconds > MaxRefreshDelaySeconds {
		ps.add(field+".bakeTimeSeconds", "is %d; set 0 to %d (48 hours)", r.BakeTimeSeconds, MaxRefreshDelaySeconds)
	}
	if len(r.Alarms) > 0 && !r.AutoRollback {
		ps.add(field+".alarms", "take effect only with autoRollback (Auto Scaling refuses them otherwise); set autoRollback: true or remove them")
	}
	if len(r.Alarms) > MaxRefreshAlarms {
		ps.add(field+".alarms", "lists %d alarms; Auto Scaling takes at most %d", len(r.Alarms), MaxRefreshAlarms)
	}
	seen := map[string]bool{}
	for i, a := range r.Alarms {
		f := fmt.Sprintf("%s.alarms[%d]", field, i)
		switch n := utf8.RuneCountInString(a); {
		case n == 0:
			ps.add(f, "is empty; name a CloudWatch alarm")
		case n > maxAlarmName:
			ps.add(f, "has %d characters; alarm names have at most %d", n, maxAlarmName)
		case seen[a]:
			ps.add(f, "%q is listed twice; list each alarm once", a)
		}
		seen[a] = true
	}
	if r.TimeoutMinutes < 1 || r.TimeoutMinutes > MaxTimeoutMinutes {
		ps.add(field+".timeoutMinutes", "is %d; set 1 to %d (48 hours)", r.TimeoutMinutes, MaxTimeoutMinutes)
	}
}
