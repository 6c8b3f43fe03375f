package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Input is a parsed and validated execution input: which policy runs, as
// which rotation, for which instances.
type Input struct {
	Policy   Policy   `json:"policy"`
	Rotation Rotation `json:"rotation"`
	// InstanceIDs limits the run to these instances (sorted, unique): the
	// instance of a tag change or a manual run's list. Empty: every instance
	// the policy's selector matches.
	InstanceIDs []string `json:"instanceIds,omitempty"`
	// Region is where a tag-change event's instance lives (empty for other
	// triggers). The discover step refuses it unless it is the home region.
	Region string `json:"region,omitempty"`
}

// rawInput is the execution input as the schedule, the event rule or a
// person sends it. Which fields are allowed depends on Trigger.
type rawInput struct {
	Policy        json.RawMessage `json:"policy"`
	Trigger       string          `json:"trigger"`
	ScheduledTime string          `json:"scheduledTime,omitempty"`
	Event         json.RawMessage `json:"event,omitempty"`
	InstanceIDs   []string        `json:"instanceIds,omitempty"`
	RotationTime  string          `json:"rotationTime,omitempty"`
	Backfill      bool            `json:"backfill,omitempty"`
}

// maxClockSkew is how far a rotation time may lie after the execution's
// start. Retention counts ages from the rotation time, so a rotation time in
// the future would make young images look old enough to delete.
const maxClockSkew = 5 * time.Minute

// EventBridge "Tag Change on Resource" constants.
const (
	TagChangeDetailType = "Tag Change on Resource"
	TagChangeSource     = "aws.tag"
)

var (
	instanceIDRE  = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	instanceARNRE = regexp.MustCompile(`^arn:aws(-cn|-us-gov|-iso[a-z]?)?:ec2:([a-z0-9-]+):([0-9]{12})?:instance/(.*)$`)
)

// ValidInstanceID reports whether id has the shape of an EC2 instance id
// (i- and 8 or 17 lowercase hex digits).
func ValidInstanceID(id string) bool { return instanceIDRE.MatchString(id) }

// ParseInput parses an execution input of any trigger (see the package's
// README for the shapes). startTime is the execution's start: the rotation
// time of a manual run that names none, and where poll's timeout counts from.
//
// Paths in its errors are relative to the input ("trigger",
// "policy.retention", "event.detail.changed-tag-keys").
func ParseInput(raw []byte, startTime time.Time) (Input, error) {
	var in rawInput
	if ps := decodeStrict(raw, &in, ""); len(ps) > 0 {
		return Input{}, ps.err()
	}
	var ps problems

	var policy Policy
	if len(in.Policy) == 0 || string(in.Policy) == "null" {
		ps.add("policy", "is missing; the input carries the policy to run")
	} else {
		p, err := decodePolicy(in.Policy, "policy")
		var inv InvalidInputError
		if errors.As(err, &inv) {
			ps = append(ps, inv.Problems...)
		}
		policy = p
	}

	var rotTime time.Time
	var out Input
	notFor := func(field, trigger string) {
		ps.add(field, "is not used by trigger %q; remove it", trigger)
	}
	switch in.Trigger {
	case TriggerSchedule:
		if in.Event != nil {
			notFor("event", in.Trigger)
		}
		if in.Backfill {
			notFor("backfill", in.Trigger)
		}
		if in.InstanceIDs != nil {
			notFor("instanceIds", in.Trigger)
		}
		if in.RotationTime != "" {
			notFor("rotationTime", in.Trigger)
		}
		if in.ScheduledTime == "" {
			ps.add("scheduledTime", "is missing; the schedule's target input sets it to <aws.scheduler.scheduled-time>")
		} else {
			rotTime = parseTime(&ps, "scheduledTime", in.ScheduledTime)
		}
	case TriggerTagChange:
		if in.ScheduledTime != "" {
			notFor("scheduledTime", in.Trigger)
		}
		if in.Backfill {
			notFor("backfill", in.Trigger)
		}
		if in.InstanceIDs != nil {
			notFor("instanceIds", in.Trigger)
		}
		if in.RotationTime != "" {
			notFor("rotationTime", in.Trigger)
		}
		if len(in.Event) == 0 || string(in.Event) == "null" {
			ps.add("event", "is missing; the rule's input transformer embeds the event as <aws.events.event>")
		} else {
			ev := parseTagChange(&ps, in.Event)
			rotTime, out.InstanceIDs, out.Region = ev.time, ev.instanceIDs, ev.region
		}
	case TriggerManual:
		if in.ScheduledTime != "" {
			notFor("scheduledTime", in.Trigger)
		}
		if in.Event != nil {
			notFor("event", in.Trigger)
		}
		if in.InstanceIDs != nil && len(in.InstanceIDs) == 0 {
			// A script whose list came out empty must not rotate the whole fleet.
			ps.add("instanceIds", "is an empty list; list instance ids, or leave the field out to rotate every instance the selector matches")
		}
		for i, id := range in.InstanceIDs {
			if !ValidInstanceID(id) {
				ps.add(fmt.Sprintf("instanceIds[%d]", i), "%q is not an instance id; use one like i-0123456789abcdef0", id)
			}
		}
		out.InstanceIDs = uniqueSorted(in.InstanceIDs)
		switch {
		case in.RotationTime != "":
			rotTime = parseTime(&ps, "rotationTime", in.RotationTime)
		case startTime.IsZero():
			ps.add("rotationTime", "is missing and the execution's start time is unknown; set it (RFC 3339, e.g. 2026-11-25T03:00:00Z)")
		default:
			rotTime = startTime
		}
	case "":
		ps.add("trigger", "is missing; set %q, %q or %q", TriggerSchedule, TriggerTagChange, TriggerManual)
	default:
		ps.add("trigger", "%q is not a trigger; set %q, %q or %q", in.Trigger, TriggerSchedule, TriggerTagChange, TriggerManual)
	}

	if !rotTime.IsZero() && !startTime.IsZero() && rotTime.After(startTime.Add(maxClockSkew)) {
		ps.add(rotationTimeField(in.Trigger), "%s is after the execution's start (%s); retention counts image ages from it, so it may not lie in the future",
			rotTime.UTC().Format(time.RFC3339), startTime.UTC().Format(time.RFC3339))
	}
	if err := ps.err(); err != nil {
		return Input{}, err
	}
	started := startTime
	if started.IsZero() {
		started = rotTime.Truncate(time.Minute)
	}
	out.Policy = policy
	out.Rotation = NewRotation(rotTime, in.Trigger, started)
	out.Rotation.Backfill = in.Backfill
	return out, nil
}

func rotationTimeField(trigger string) string {
	switch trigger {
	case TriggerSchedule:
		return "scheduledTime"
	case TriggerTagChange:
		return "event.time"
	}
	return "rotationTime"
}

func parseTime(ps *problems, field, s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		ps.add(field, "%q is not a time; use RFC 3339, e.g. 2026-11-25T03:00:00Z", s)
		return time.Time{}
	}
	return t
}

func uniqueSorted(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// tagChangeEvent is the part of an EventBridge "Tag Change on Resource"
// event amirotate reads. It is decoded leniently, unlike a policy: AWS may
// add fields to its events. detail.version is not read at all, as real
// events carry it as an integer or as a float such as 3.0.
type tagChangeEvent struct {
	DetailType string   `json:"detail-type"`
	Source     string   `json:"source"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Resources  []string `json:"resources"`
	Detail     struct {
		ChangedTagKeys []string `json:"changed-tag-keys"`
		Service        string   `json:"service"`
		ResourceType   string   `json:"resource-type"`
	} `json:"detail"`
}

type tagChange struct {
	time        time.Time
	instanceIDs []string
	region      string
}

// parseTagChange checks that the event asks for a rebuild of EC2 instances
// and returns them with the event's time.
func parseTagChange(ps *problems, raw json.RawMessage) tagChange {
	var ev tagChangeEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			ps.add("event."+te.Field, "is a JSON %s; expected %s (is this an EventBridge Tag Change on Resource event?)", te.Value, jsonKind(te.Type))
		} else {
			ps.add("event", "is not an EventBridge event object: %v", err)
		}
		return tagChange{}
	}
	var out tagChange
	if ev.DetailType != TagChangeDetailType {
		ps.add("event.detail-type", "is %q; expected %q", ev.DetailType, TagChangeDetailType)
	}
	if ev.Source != TagChangeSource {
		ps.add("event.source", "is %q; expected %q", ev.Source, TagChangeSource)
	}
	if ev.Detail.Service != "ec2" || ev.Detail.ResourceType != "instance" {
		ps.add("event.detail", "is a change on %q resource %q; only EC2 instances (service ec2, resource-type instance) are rebuilt",
			ev.Detail.Service, ev.Detail.ResourceType)
	}
	if !slices.Contains(ev.Detail.ChangedTagKeys, TagRebuild) {
		ps.add("event.detail.changed-tag-keys", "%q does not include %s; only a change of that tag starts a rotation (check the rule's event pattern)",
			ev.Detail.ChangedTagKeys, TagRebuild)
	}
	if len(ev.Resources) == 0 {
		ps.add("event.resources", "is empty; expected the instance's ARN")
	}
	for i, arn := range ev.Resources {
		field := fmt.Sprintf("event.resources[%d]", i)
		m := instanceARNRE.FindStringSubmatch(arn)
		switch {
		case m == nil:
			ps.add(field, "%q is not an EC2 instance ARN (arn:aws:ec2:<region>:<account>:instance/i-...)", arn)
		case !ValidInstanceID(m[4]):
			ps.add(field, "%q is not an instance id", m[4])
		case out.region != "" && m[2] != out.region:
			ps.add(field, "is in %s, the first resource in %s; expected one region", m[2], out.region)
		default:
			out.region = m[2]
			out.instanceIDs = append(out.instanceIDs, m[4])
		}
	}
	out.instanceIDs = uniqueSorted(out.instanceIDs)
	if ev.Time == "" {
		ps.add("event.time", "is missing; the event's time is the rotation time")
	} else {
		out.time = parseTime(ps, "event.time", ev.Time)
	}
	return out
}
