package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Discover validates the execution input and resolves the rotation's
// targets: the home region's running or stopped instances that match the
// policy's selector (one paginated DescribeInstances), narrowed to the
// explicit instance ids of a tag change or manual run, which are refused
// with a reason when they do not (or no longer) match. Targets go out in
// batches of policy.batchSize for the state machine's Map.
type Discover struct {
	EC2 ec2x.Regional[ec2x.DiscoverEC2]
	Env
}

// Handle discovers; a bad input is an InvalidInputError naming the field.
func (s *Discover) Handle(ctx context.Context, in DiscoverIn) (DiscoverOut, error) {
	return classified(s.handle(ctx, in))
}

func (s *Discover) handle(ctx context.Context, in DiscoverIn) (DiscoverOut, error) {
	if !s.EC2.Configured() {
		return DiscoverOut{}, fmt.Errorf("handler has no AWS clients")
	}
	if len(in.Input) == 0 || string(in.Input) == "null" {
		return DiscoverOut{}, rotation.Invalid("input", "is missing; the first state passes the execution input as \"input\"")
	}
	start := in.StartTime
	if start.IsZero() {
		start = s.now()
	}
	input, err := rotation.ParseInput(in.Input, start)
	if err != nil {
		return DiscoverOut{}, err
	}
	home := s.EC2.Home()
	p := input.Policy
	if err := p.CheckHome(home); err != nil {
		return DiscoverOut{}, err
	}
	if err := s.Policies.Check(p); err != nil {
		return DiscoverOut{}, err
	}
	if err := rotation.CheckRotationTime(input.Rotation.Time, s.now()); err != nil {
		return DiscoverOut{}, err
	}
	rot := input.Rotation
	rot.Home = home

	out := DiscoverOut{
		Policy:   p,
		Rotation: rot,
		Batches:  []BatchItem{},
		Targets:  []string{},
		// A run over the whole selector also prunes the images of instances
		// that left it; a run over named instances touches only those.
		RetainOthers: rot.Trigger == rotation.TriggerSchedule ||
			(rot.Trigger == rotation.TriggerManual && len(input.InstanceIDs) == 0),
	}

	explicit := input.InstanceIDs
	if input.Region != "" && input.Region != home {
		for _, id := range explicit {
			out.Refused = append(out.Refused, rotation.Record{InstanceID: id, Region: input.Region, State: rotation.StateRefused,
				Error: fmt.Sprintf("instance is in %s; policy %s makes images in %s", input.Region, p.Name, home)})
		}
		return out, nil
	}

	client := s.EC2.In(home)
	filters := append(ec2x.Filters(p.Selector.Filters()), ec2x.Filter("instance-state-name", imageableStates...))
	if len(explicit) > 0 {
		filters = append(filters, ec2x.Filter("instance-id", explicit...))
	}
	// Pages of EC2's largest size, of which only the ids are kept: a fleet of
	// 10,000 instances is never held whole.
	err = eachInstance(ctx, client, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(1000)}, func(inst types.Instance) {
		// EC2 filtered already; matching again guards against a filter
		// reading a value differently (wildcards) than the selector means it.
		tags := ec2x.TagMap(inst.Tags)
		if !p.Selector.Matches(tags) {
			return
		}
		id := aws.ToString(inst.InstanceId)
		if image, ok := tags[rotation.TagVerifies]; ok {
			// A test instance amirotate launched from a new image is no
			// source of images; a selector that matches it says so.
			out.Refused = append(out.Refused, rotation.Record{InstanceID: id, Region: home, State: rotation.StateRefused,
				Error: fmt.Sprintf("a verification instance (%s=%s), not imaged: narrow the policy's selector %s", rotation.TagVerifies, image, selectorText(p.Selector))})
			return
		}
		out.Targets = append(out.Targets, id)
	})
	if err != nil {
		return DiscoverOut{}, fmt.Errorf("listing the instances of policy %s in %s: %w", p.Name, home, err)
	}
	slices.Sort(out.Targets)
	// An instance listed on two pages (one that changed while being listed)
	// is one target.
	out.Targets = slices.Compact(out.Targets)

	if len(explicit) > 0 {
		var missing []string
		for _, id := range explicit {
			refused := slices.ContainsFunc(out.Refused, func(r rotation.Record) bool { return r.InstanceID == id })
			if !refused && !slices.Contains(out.Targets, id) {
				missing = append(missing, id)
			}
		}
		others, err := s.refusals(ctx, client, p, home, missing)
		if err != nil {
			return DiscoverOut{}, err
		}
		out.Refused = append(out.Refused, others...)
	}
	if rot.Trigger == rotation.TriggerTagChange && len(out.Targets) > 0 {
		if err := s.coolDown(ctx, client, p, rot, home, &out); err != nil {
			return DiscoverOut{}, err
		}
	}
	if len(out.Targets) == 0 {
		// A selector that matches nothing (a typo, a mistagged fleet) must
		// not prune the images of every instance it used to match: the
		// report fails such a run instead.
		out.RetainOthers = false
	}
	for chunk := range slices.Chunk(out.Targets, p.BatchSize) {
		out.Batches = append(out.Batches, BatchItem{InstanceIDs: chunk})
	}
	return out, nil
}

// coolDown refuses the rebuild of instances imaged less than
// rebuild.cooldownMinutes before this rotation: whoever can tag an instance
// could otherwise make an image a minute (a cost, and a flood of images).
func (s *Discover) coolDown(ctx context.Context, client ec2x.DiscoverEC2, p rotation.Policy, rot rotation.Rotation, home string, out *DiscoverOut) error {
	newest, err := newestImages(ctx, client, home, p.Name, out.Targets)
	if err != nil {
		return err
	}
	cooldown := time.Duration(p.Rebuild.CooldownMinutes) * time.Minute
	var targets []string
	for _, id := range out.Targets {
		img, ok := newest[id]
		last, _ := rotation.ParseRotationID(img.Tags[rotation.TagRotation])
		if ok && rot.Time.Sub(last) < cooldown {
			out.Refused = append(out.Refused, rotation.Record{InstanceID: id, Region: home, State: rotation.StateRefused,
				Error: fmt.Sprintf("rebuild refused: imaged at %s (%s), within the policy's rebuild cooldown of %d minutes",
					last.Format(time.RFC3339), img.ID, p.Rebuild.CooldownMinutes)})
			continue
		}
		targets = append(targets, id)
	}
	out.Targets = targets
	if out.Targets == nil {
		out.Targets = []string{}
	}
	return nil
}

// refusals explains why explicit instance ids are not targets (one more
// DescribeInstances, only when there are some).
func (s *Discover) refusals(ctx context.Context, client ec2x.DiscoverEC2, p rotation.Policy, home string, ids []string) ([]rotation.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	found, err := describeInstances(ctx, client, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{ec2x.Filter("instance-id", ids...)},
	})
	if err != nil {
		return nil, fmt.Errorf("reading instances %s in %s: %w", strings.Join(ids, ", "), home, err)
	}
	out := make([]rotation.Record, 0, len(ids))
	for _, id := range ids {
		inst, ok := found[id]
		why := refusal(inst, ok, p)
		if why == "" {
			// Matches now: it changed between the two calls.
			why = "instance changed while it was being checked; run again"
		}
		if ok && !p.Selector.Matches(ec2x.TagMap(inst.Tags)) {
			why = fmt.Sprintf("instance tags do not match the policy's selector %s", selectorText(p.Selector))
		}
		out = append(out, rotation.Record{InstanceID: id, Region: home, State: rotation.StateRefused, Error: why})
	}
	return out, nil
}

// selectorText renders a selector for a message: {k=v, k2=*}.
func selectorText(s rotation.Selector) string {
	var parts []string
	for _, f := range s.Filters() {
		parts = append(parts, strings.TrimPrefix(f.Name, "tag:")+"="+strings.Join(f.Values, ","))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
