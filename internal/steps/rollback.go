package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Rollback puts an instance's consumers back on an earlier image of the
// same lineage (`amirotate rollback`): in each region, the policy's SSM
// parameter, the tracked launch templates' default version and
// amirotate:latest move to the image of the rotation rolled back to, and
// the instance's images newer than it are marked amirotate:rolled-back
// (rotation.TagRolledBack), so that no rotation publishes them again and
// retention keeps the target while the mark stands. It reuses publish's
// primitives, with publish's clients and so publish's role.
//
// Only provable images of the policy and instance (rotation.Proven) are
// ever rolled back to or marked; the marks written by others can make it
// refuse or skip an image, never reach another lineage. It is idempotent:
// a second run finds everything in place and changes nothing.
type Rollback struct {
	Publish *Publish
	Env
}

// NewRollback builds Rollback over publish's clients.
func NewRollback(c *ec2x.Clients, env Env) *Rollback {
	return &Rollback{Publish: NewPublish(c, env), Env: env}
}

// RollbackIn says what to roll back.
type RollbackIn struct {
	Policy     rotation.Policy `json:"policy"`
	InstanceID string          `json:"instanceId"`
	// Regions limits the rollback to some of the policy's regions (nil: all).
	Regions []string `json:"regions,omitempty"`
	// To names the image to roll back to (any region's image of its
	// rotation); "" rolls back to the previous available image.
	To     string `json:"to,omitempty"`
	DryRun bool   `json:"dryRun,omitempty"`
	// Clear lifts the instance's rolled-back marks instead.
	Clear bool `json:"clear,omitempty"`
}

// RollbackOut is what a rollback did (or, in a dry run, would do).
type RollbackOut struct {
	Policy     string `json:"policy"`
	InstanceID string `json:"instanceId"`
	Clear      bool   `json:"clear,omitempty"`
	// ToRotation is the rotation rolled back to.
	ToRotation string           `json:"toRotation,omitempty"`
	DryRun     bool             `json:"dryRun"`
	Changed    bool             `json:"changed"`
	Failed     bool             `json:"failed"`
	Regions    []RollbackRegion `json:"regions"`
}

// RollbackRegion is one region of a rollback.
type RollbackRegion struct {
	Region string `json:"region"`
	// ImageID is the image rolled back to.
	ImageID string `json:"imageId,omitempty"`
	// Marked are the instance's images newer than it, all marked rolled
	// back from; MarkedNow those this run marked (or would).
	Marked    []string `json:"marked,omitempty"`
	MarkedNow []string `json:"markedNow,omitempty"`
	// Published is the SSM parameter and launch templates moved (publish's
	// Publication: Changed false when they already launched ImageID).
	Published *Publication `json:"published,omitempty"`
	// LatestFrom are the images amirotate:latest was taken from; LatestMoved
	// whether ImageID got it in this run.
	LatestFrom  []string `json:"latestFrom,omitempty"`
	LatestMoved bool     `json:"latestMoved,omitempty"`
	// Cleared are the images whose mark --clear lifted (or would).
	Cleared []string `json:"cleared,omitempty"`
	Changed bool     `json:"changed"`
	Error   string   `json:"error,omitempty"`
}

// RollbackRefused is a rollback that cannot be done as asked; nothing
// was changed.
type RollbackRefused struct{ Reason string }

func (e RollbackRefused) Error() string { return "nothing rolled back: " + e.Reason }

func refuse(format string, args ...any) error {
	return RollbackRefused{Reason: fmt.Sprintf(format, args...)}
}

// Handle rolls back (or clears the marks of) one instance.
func (r *Rollback) Handle(ctx context.Context, in RollbackIn) (RollbackOut, error) {
	pol := in.Policy.WithDefaults()
	if err := pol.Validate(); err != nil {
		return RollbackOut{}, err
	}
	if err := r.Policies.Check(pol); err != nil {
		return RollbackOut{}, err
	}
	if !rotation.ValidInstanceID(in.InstanceID) {
		return RollbackOut{}, rotation.Invalid("instance", "%q is not an instance id (i- and 8 or 17 hex digits)", in.InstanceID)
	}
	if !r.Publish.EC2.Configured() {
		return RollbackOut{}, errors.New("rollback has no AWS clients")
	}
	home := r.Publish.EC2.Home()
	if err := pol.CheckHome(home); err != nil {
		return RollbackOut{}, err
	}
	all := pol.Regions(home)
	regions := all
	if len(in.Regions) > 0 {
		regions = nil
		for _, reg := range in.Regions {
			if !slices.Contains(all, reg) {
				return RollbackOut{}, rotation.Invalid("region", "%s is not one of policy %s's regions (%s)", reg, pol.Name, strings.Join(all, ", "))
			}
			if !slices.Contains(regions, reg) {
				regions = append(regions, reg)
			}
		}
	}
	pol.DryRun = pol.DryRun || in.DryRun
	out := RollbackOut{Policy: pol.Name, InstanceID: in.InstanceID, Clear: in.Clear, DryRun: pol.DryRun}

	images, err := eachRegion(regions, "listing the images of "+in.InstanceID, func(region string) ([]rotation.Image, error) {
		return r.lineage(ctx, region, pol.Name, in.InstanceID)
	})
	if err != nil {
		return out, ec2x.Classify(err)
	}
	if in.Clear {
		// The audit lines name the rotation the marks rolled back to.
		var marks []string
		for _, imgs := range images {
			for _, img := range imgs {
				if v, ok := img.Tags[rotation.TagRolledBack]; ok && !slices.Contains(marks, v) {
					marks = append(marks, v)
				}
			}
		}
		slices.Sort(marks)
		ctx = r.auditing(ctx, pol.Name, strings.Join(marks, ","))
		out.Regions = make([]RollbackRegion, len(regions))
		eachRegion(regions, "clear", func(region string) (struct{}, error) {
			i := slices.Index(regions, region)
			out.Regions[i] = r.clear(ctx, region, pol, in.InstanceID, images[i])
			return struct{}{}, nil
		})
		out.finish()
		return out, nil
	}

	target, err := r.target(ctx, pol, in, regions, images)
	if err != nil {
		return out, err
	}
	out.ToRotation = target
	ctx = r.auditing(ctx, pol.Name, target)
	mv := move{
		policy:      pol,
		rotationID:  target,
		backwards:   true,
		tokenKey:    "rollback " + target,
		why:         "roll back %s to rotation " + target,
		description: fmt.Sprintf("amirotate rollback of %s to %s", in.InstanceID, target),
	}
	out.Regions = make([]RollbackRegion, len(regions))
	eachRegion(regions, "rollback", func(region string) (struct{}, error) {
		i := slices.Index(regions, region)
		out.Regions[i] = r.rollbackRegion(ctx, region, mv, in.InstanceID, images[i])
		return struct{}{}, nil
	})
	out.finish()
	return out, nil
}

func (o *RollbackOut) finish() {
	for _, reg := range o.Regions {
		o.Changed = o.Changed || reg.Changed
		o.Failed = o.Failed || reg.Error != "" || (reg.Published != nil && reg.Published.Error != "")
	}
}

// lineage lists the provable images of policy made of instanceID in
// region, newest first.
func (r *Rollback) lineage(ctx context.Context, region, policy, instanceID string) ([]rotation.Image, error) {
	found, err := imagesOfInstances(ctx, r.Publish.EC2.In(region), []string{instanceID},
		ec2x.Filter("tag:"+rotation.TagPolicy, policy), ec2x.Filter("tag:"+rotation.TagCreatedBy, rotation.CreatedBy))
	if err != nil {
		return nil, err
	}
	var out []rotation.Image
	for _, im := range found {
		img := toImage(im, region)
		if rotation.Unproven(img, policy) == "" && img.Tags[rotation.TagInstanceID] == instanceID {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b rotation.Image) int {
		return cmp.Or(cmp.Compare(b.Tags[rotation.TagRotation], a.Tags[rotation.TagRotation]), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// target decides the rotation to roll back to, the same in every region,
// or refuses with the reason. Without --to: if the newest available image
// is marked already, the rollback was done and its target stands (the
// newest unmarked one); otherwise the one before the newest that is not
// marked.
func (r *Rollback) target(ctx context.Context, pol rotation.Policy, in RollbackIn, regions []string, images [][]rotation.Image) (string, error) {
	where := strings.Join(regions, ", ")
	available := map[string]map[string]string{} // rotation → region → image
	marked := map[string]bool{}                 // rotation → some image of it is marked
	rejected := map[string]bool{}               // rotation → some image of it failed verification
	for i, imgs := range images {
		for _, img := range imgs {
			rot := img.Tags[rotation.TagRotation]
			if rotation.RolledBack(img.Tags) {
				marked[rot] = true
			}
			if rotation.Rejected(img.Tags) {
				rejected[rot] = true
			}
			if img.State == rotation.StateAvailable {
				if available[rot] == nil {
					available[rot] = map[string]string{}
				}
				available[rot][regions[i]] = img.ID
			}
		}
	}
	// An image that failed its verification was never published: it is
	// neither what is rolled back from nor a target.
	for rot := range rejected {
		delete(available, rot)
	}
	rotations := slices.Sorted(maps.Keys(available))
	slices.Reverse(rotations) // newest first
	var target string
	switch {
	case in.To != "":
		t, err := r.resolveTo(ctx, pol, in, regions, images)
		if err != nil {
			return "", err
		}
		if marked[t] {
			return "", refuse("%s (rotation %s) is itself marked %s; lift the marks with --clear first if it is good after all", in.To, t, rotation.TagRolledBack)
		}
		target = t
	case len(rotations) == 0:
		return "", refuse("%s has no available image of policy %s in %s", in.InstanceID, pol.Name, where)
	case marked[rotations[0]]:
		for _, rot := range rotations {
			if !marked[rot] {
				target = rot
				break
			}
		}
		if target == "" {
			return "", refuse("every available image of %s in %s is marked %s; name the image to roll back to with --to after --clear",
				in.InstanceID, where, rotation.TagRolledBack)
		}
	default:
		for _, rot := range rotations[1:] {
			if !marked[rot] {
				target = rot
				break
			}
		}
		if target == "" {
			return "", refuse("nothing to roll back to: rotation %s (%s) is the only available image of %s of policy %s in %s not marked %s",
				rotations[0], strings.Join(slices.Sorted(maps.Values(available[rotations[0]])), ", "), in.InstanceID, pol.Name, where, rotation.TagRolledBack)
		}
	}
	var missing []string
	for _, region := range regions {
		if available[target][region] == "" {
			missing = append(missing, region)
		}
	}
	if len(missing) > 0 {
		return "", refuse("%s has no available image of rotation %s in %s; roll back the other regions with --region, or choose another image with --to",
			in.InstanceID, target, strings.Join(missing, ", "))
	}
	newer := false
	for _, imgs := range images {
		for _, img := range imgs {
			newer = newer || img.Tags[rotation.TagRotation] > target
		}
	}
	if !newer {
		return "", refuse("rotation %s is the newest of %s in %s: there is nothing newer to roll back from", target, in.InstanceID, where)
	}
	return target, nil
}

// resolveTo finds the rotation of the image --to names, which must be one
// of the instance's provable images of the policy in one of the regions.
func (r *Rollback) resolveTo(ctx context.Context, pol rotation.Policy, in RollbackIn, regions []string, images [][]rotation.Image) (string, error) {
	for _, imgs := range images {
		for _, img := range imgs {
			if img.ID == in.To {
				if img.State != rotation.StateAvailable {
					return "", refuse("%s is %s, not available", in.To, img.State)
				}
				if rotation.Rejected(img.Tags) {
					return "", refuse("%s failed its verification (%s=%s): it is never published; choose another image",
						in.To, rotation.TagVerification, rotation.VerificationFailed)
				}
				return img.Tags[rotation.TagRotation], nil
			}
		}
	}
	// Not in the lineage: say why, from what EC2 knows of it.
	for _, region := range regions {
		found, err := describeImagesByID(ctx, r.Publish.EC2.In(region), []string{in.To})
		if err != nil {
			return "", fmt.Errorf("reading %s in %s: %w", in.To, region, err)
		}
		im, ok := found[in.To]
		if !ok {
			continue
		}
		img := toImage(im, region)
		why := rotation.Unproven(img, pol.Name)
		if why == "" {
			why = "it is an image of " + img.Tags[rotation.TagInstanceID]
		}
		return "", refuse("%s in %s is not one of policy %s's images of %s: %s", in.To, region, pol.Name, in.InstanceID, why)
	}
	return "", refuse("%s is not an image of this account in %s", in.To, strings.Join(regions, ", "))
}

// rollbackRegion marks, publishes and moves latest in one region: marks
// first, so that whatever fails after, nothing publishes the images rolled
// back from again.
func (r *Rollback) rollbackRegion(ctx context.Context, region string, mv move, instanceID string, images []rotation.Image) RollbackRegion {
	out := RollbackRegion{Region: region}
	cl := r.Publish.EC2.In(region)
	dryRun := mv.policy.DryRun
	var target rotation.Image
	for _, img := range images {
		rot := img.Tags[rotation.TagRotation]
		switch {
		case rot == mv.rotationID && img.State == rotation.StateAvailable && target.ID == "":
			target = img
		case rot > mv.rotationID:
			out.Marked = append(out.Marked, img.ID)
			if img.Tags[rotation.TagRolledBack] != mv.rotationID {
				out.MarkedNow = append(out.MarkedNow, img.ID)
			}
		}
	}
	out.ImageID = target.ID
	if len(out.MarkedNow) > 0 && !dryRun {
		_, err := cl.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: out.MarkedNow,
			Tags:      ec2x.Tags(map[string]string{rotation.TagRolledBack: mv.rotationID}),
		})
		audit(ctx, "CreateTags", region, out.MarkedNow, fmt.Sprintf("mark %s's images rolled back from (%s=%s)", instanceID, rotation.TagRolledBack, mv.rotationID), err)
		if err != nil {
			out.Error = fmt.Sprintf("marking %s rolled back from: %v; nothing else changed here", strings.Join(out.MarkedNow, ", "), err)
			return out
		}
	}
	out.Changed = len(out.MarkedNow) > 0

	if mv.policy.Publish.SSMParameter != "" || mv.policy.Publish.LaunchTemplates {
		pub := &Publication{InstanceID: instanceID, Region: region, ImageID: target.ID,
			SSMParameter: rotation.SSMParameterName(mv.policy, instanceID, region)}
		r.Publish.point(ctx, region, mv, []*Publication{pub})
		out.Published = pub
		out.Changed = out.Changed || pub.Changed
	}

	for _, img := range images {
		if img.Tags[rotation.TagLatest] == rotation.LatestValue && img.ID != target.ID {
			out.LatestFrom = append(out.LatestFrom, img.ID)
		}
	}
	out.LatestMoved = target.Tags[rotation.TagLatest] != rotation.LatestValue
	out.Changed = out.Changed || out.LatestMoved || len(out.LatestFrom) > 0
	if dryRun {
		return out
	}
	// The target first: whoever looks for the latest image always finds one.
	if out.LatestMoved {
		_, err := cl.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: []string{target.ID},
			Tags:      ec2x.Tags(map[string]string{rotation.TagLatest: rotation.LatestValue}),
		})
		audit(ctx, "CreateTags", region, []string{target.ID}, fmt.Sprintf("roll back %s: mark %s", instanceID, rotation.TagLatest), err)
		if err != nil {
			out.Error = fmt.Sprintf("marking %s %s: %v", target.ID, rotation.TagLatest, err)
			return out
		}
	}
	if len(out.LatestFrom) > 0 {
		_, err := cl.DeleteTags(ctx, &ec2.DeleteTagsInput{
			Resources: out.LatestFrom,
			Tags:      []types.Tag{{Key: aws.String(rotation.TagLatest)}},
		})
		audit(ctx, "DeleteTags", region, out.LatestFrom, fmt.Sprintf("roll back %s: the images rolled back from are no longer %s", instanceID, rotation.TagLatest), err)
		if err != nil && !ec2x.IsNotFound(err) {
			out.Error = fmt.Sprintf("removing %s from %s: %v", rotation.TagLatest, strings.Join(out.LatestFrom, ", "), err)
		}
	}
	return out
}

// clear lifts the rolled-back marks of the instance's provable images in
// region. What the marks held back is published again by the next
// rotation (its new image), not by this.
func (r *Rollback) clear(ctx context.Context, region string, pol rotation.Policy, instanceID string, images []rotation.Image) RollbackRegion {
	out := RollbackRegion{Region: region}
	for _, img := range images {
		if rotation.RolledBack(img.Tags) {
			out.Cleared = append(out.Cleared, img.ID)
		}
	}
	out.Changed = len(out.Cleared) > 0
	if !out.Changed || pol.DryRun {
		return out
	}
	_, err := r.Publish.EC2.In(region).DeleteTags(ctx, &ec2.DeleteTagsInput{
		Resources: out.Cleared,
		Tags:      []types.Tag{{Key: aws.String(rotation.TagRolledBack)}},
	})
	audit(ctx, "DeleteTags", region, out.Cleared, "rollback --clear: lift the "+rotation.TagRolledBack+" mark of "+instanceID+"'s images", err)
	if err != nil && !ec2x.IsNotFound(err) {
		out.Error = fmt.Sprintf("lifting the marks of %s: %v", strings.Join(out.Cleared, ", "), err)
	}
	return out
}
