package steps

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Snapshot makes the source image of each instance of a batch in the home
// region (CreateImage), or adopts the one an earlier attempt of the same
// rotation made: the AMI name is deterministic, so a retried or duplicated
// invocation finds it (InvalidAMIName.Duplicate) instead of making a second.
type Snapshot struct {
	Clients *ec2x.Clients
	Now     func() time.Time
}

// ec2 is the step's client for region, typed to the calls it may make
// (its IAM role grants exactly those: ec2x.Actions).
func (s *Snapshot) ec2(region string) ec2x.SnapshotEC2 { return s.Clients.EC2(region) }

// Handle answers the batch with one record per instance: pending (or
// available, when adopted), refused with the reason, or error.
func (s *Snapshot) Handle(ctx context.Context, in Batch) (Batch, error) {
	return classified(s.handle(ctx, in))
}

// instanceStates an image can be made from.
var imageableStates = []string{string(types.InstanceStateNameRunning), string(types.InstanceStateNameStopped)}

func (s *Snapshot) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, s.Clients)
	if err != nil {
		return Batch{}, err
	}
	p := bc.policy
	client := s.ec2(bc.home)
	b.Images = slices.Clone(b.Images) // never write into the caller's records

	instances, err := describeInstances(ctx, client, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{ec2x.Filter("instance-id", b.InstanceIDs...)},
	})
	if err != nil {
		return Batch{}, fmt.Errorf("describing the batch's instances in %s: %w", bc.home, err)
	}

	records := make([]rotation.Record, len(b.InstanceIDs))
	var (
		mu        sync.Mutex
		retryable error
	)
	ec2x.ForEach(ctx, len(b.InstanceIDs), ec2x.Workers, func(i int) {
		id := b.InstanceIDs[i]
		r := rotation.Record{InstanceID: id, Region: bc.home, Name: rotation.ImageName(p.Name, id, b.Rotation.ID)}
		inst, ok := instances[id]
		switch why := refusal(inst, ok, p); {
		case why != "":
			r.State, r.Error = rotation.StateRefused, why
		case p.DryRun:
			r.State = rotation.StatePlanned
		default:
			tags := rotation.ImageTags(p, b.Rotation, id, ec2x.TagMap(inst.Tags))
			if err := s.createImage(ctx, client, p, b.Rotation, &r, tags); err != nil {
				if ec2x.IsRetryable(err) {
					mu.Lock()
					retryable = err
					mu.Unlock()
				}
				r.State, r.Error = rotation.StateError, errText(err)
			}
		}
		records[i] = r
	})
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}
	if retryable != nil {
		// The images made so far are found again by name on the retry.
		return Batch{}, retryable
	}

	b.Policy = p
	b.Rotation.Home = bc.home
	b.Images = records
	b.Cleanup = nil
	b.Polls = 0
	recount(&b, p)
	b.ToCopy = 0 // copies start after a poll saw the sources available
	b.WaitSeconds = waitFor(b, p.PollIntervalSeconds)
	return b, nil
}

// refusal says why an instance is not imaged, or "" when it is.
func refusal(inst types.Instance, found bool, p rotation.Policy) string {
	if !found {
		return "instance not found in the home region (terminated or never existed)"
	}
	state := ""
	if inst.State != nil {
		state = string(inst.State.Name)
	}
	if !slices.Contains(imageableStates, state) {
		return fmt.Sprintf("instance is %s; only running or stopped instances are imaged", state)
	}
	if !p.Selector.Matches(ec2x.TagMap(inst.Tags)) {
		return "instance tags no longer match the policy's selector"
	}
	return ""
}

// createImage makes the image, or adopts the one already named r.Name.
func (s *Snapshot) createImage(ctx context.Context, client ec2x.SnapshotEC2, p rotation.Policy, rot rotation.Rotation, r *rotation.Record, tags map[string]string) error {
	out, err := client.CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId:        aws.String(r.InstanceID),
		Name:              aws.String(r.Name),
		Description:       aws.String(rotation.Description(p.Name, r.InstanceID, rot.ID)),
		NoReboot:          aws.Bool(p.NoReboot),
		TagSpecifications: ec2x.TagSpecs(tags, types.ResourceTypeImage, types.ResourceTypeSnapshot),
	})
	if err == nil {
		r.ImageID, r.State = aws.ToString(out.ImageId), rotation.StatePending
		return nil
	}
	if ec2x.Code(err) != "InvalidAMIName.Duplicate" {
		return fmt.Errorf("creating image %s of %s: %w", r.Name, r.InstanceID, err)
	}
	img, found, err := imageByName(ctx, client, r.Name)
	switch {
	case err != nil:
		return fmt.Errorf("finding image %s, which already exists: %w", r.Name, err)
	case !found:
		// EC2 knows the name but does not list the image yet.
		return ec2x.RetryableError{Code: "InvalidAMIName.Duplicate",
			Message: fmt.Sprintf("image %s exists but is not listed yet", r.Name)}
	}
	if ec2x.TagMap(img.Tags)[rotation.TagInstanceID] != r.InstanceID {
		return fmt.Errorf("image name %s is taken by %s, which is not amirotate's image of %s", r.Name, aws.ToString(img.ImageId), r.InstanceID)
	}
	r.ImageID = aws.ToString(img.ImageId)
	r.State = imageState(img)
	r.SnapshotIDs = ec2x.SnapshotIDs(img)
	if r.State == rotation.StateAvailable || r.State == rotation.StateFailed {
		// poll reads it again; a failed one is cleaned up there.
		r.State = rotation.StatePending
	}
	return nil
}

// imageByName finds the account's image named name in the client's region.
func imageByName(ctx context.Context, client ec2.DescribeImagesAPIClient, name string) (types.Image, bool, error) {
	found, err := imagesByName(ctx, client, []string{name})
	img, ok := found[name]
	return img, ok, err
}

// imagesByName finds the account's images with these names.
func imagesByName(ctx context.Context, client ec2.DescribeImagesAPIClient, names []string) (map[string]types.Image, error) {
	return describeImages(ctx, client, "name", names, func(img types.Image) *string { return img.Name })
}

// describeImagesByID reads the images by id. An image-id filter rather
// than ImageIds: EC2 answers an unknown id in ImageIds with
// InvalidAMIID.NotFound for the whole call, and a just created image may
// not be visible yet.
func describeImagesByID(ctx context.Context, client ec2.DescribeImagesAPIClient, ids []string) (map[string]types.Image, error) {
	return describeImages(ctx, client, "image-id", ids, func(img types.Image) *string { return img.ImageId })
}

// describeImages lists the account's images whose filter matches one of
// values, keyed by key: one paginated DescribeImages per MaxFilterValues
// values (more than a batch ever has in a region). Deprecated and disabled
// images are included: a name is taken by them too, and a disabled image
// must not look gone.
func describeImages(ctx context.Context, client ec2.DescribeImagesAPIClient, filter string, values []string, key func(types.Image) *string) (map[string]types.Image, error) {
	found := map[string]types.Image{}
	for _, chunk := range ec2x.Chunks(values, ec2x.MaxFilterValues) {
		pages := ec2.NewDescribeImagesPaginator(client, &ec2.DescribeImagesInput{
			Owners:            []string{"self"},
			Filters:           []types.Filter{ec2x.Filter(filter, chunk...)},
			IncludeDeprecated: aws.Bool(true),
			IncludeDisabled:   aws.Bool(true),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, img := range page.Images {
				found[aws.ToString(key(img))] = img
			}
		}
	}
	return found, nil
}

// imageState maps EC2's image state to a record state.
func imageState(img types.Image) string {
	switch img.State {
	case types.ImageStateAvailable:
		return rotation.StateAvailable
	case types.ImageStatePending, types.ImageStateTransient, "":
		return rotation.StatePending
	default: // failed, error, invalid, deregistered, disabled
		return rotation.StateFailed
	}
}

// describeInstances lists instances (paginated) by id.
func describeInstances(ctx context.Context, client ec2.DescribeInstancesAPIClient, in *ec2.DescribeInstancesInput) (map[string]types.Instance, error) {
	found := map[string]types.Instance{}
	pages := ec2.NewDescribeInstancesPaginator(client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				found[aws.ToString(inst.InstanceId)] = inst
			}
		}
	}
	return found, nil
}
