package steps

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// The EC2 reads several steps share.

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
// values, keyed by key (see imagesMatching).
func describeImages(ctx context.Context, client ec2.DescribeImagesAPIClient, filter string, values []string, key func(types.Image) *string) (map[string]types.Image, error) {
	images, err := imagesMatching(ctx, client, filter, values)
	if err != nil {
		return nil, err
	}
	found := make(map[string]types.Image, len(images))
	for _, img := range images {
		found[aws.ToString(key(img))] = img
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
	err := eachInstance(ctx, client, in, func(inst types.Instance) {
		found[aws.ToString(inst.InstanceId)] = inst
	})
	return found, err
}

// eachInstance hands every listed instance to fn, one page at a time, so
// that a listing of a whole fleet holds one page, not the fleet.
func eachInstance(ctx context.Context, client ec2.DescribeInstancesAPIClient, in *ec2.DescribeInstancesInput, fn func(types.Instance)) error {
	pages := ec2.NewDescribeInstancesPaginator(client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				fn(inst)
			}
		}
	}
	return nil
}

// toImage converts an EC2 image.
func toImage(im types.Image, region string) rotation.Image {
	img := rotation.Image{
		ID:          aws.ToString(im.ImageId),
		Region:      region,
		Name:        aws.ToString(im.Name),
		State:       string(im.State),
		Tags:        ec2x.TagMap(im.Tags),
		SnapshotIDs: ec2x.SnapshotIDs(im),
	}
	for _, bdm := range im.BlockDeviceMappings {
		if bdm.Ebs != nil {
			img.SizeGiB += int(aws.ToInt32(bdm.Ebs.VolumeSize))
		}
	}
	// An unreadable date stays zero: the planner then dates the image by
	// its rotation tag, or keeps it as of unknown age.
	if created, err := time.Parse(time.RFC3339Nano, aws.ToString(im.CreationDate)); err == nil {
		img.CreatedAt = created
	}
	if dep, err := time.Parse(time.RFC3339Nano, aws.ToString(im.DeprecationTime)); err == nil {
		img.DeprecatedAt = dep
	}
	// "disabled" is the only value that allows deregistration; "enabled",
	// "enabled-with-cooldown" and "disabled-until <time>" all still protect.
	if p := aws.ToString(im.DeregistrationProtection); p != "" && p != "disabled" {
		img.DeregistrationProtected = true
	}
	return img
}

// rotationImage reports whether img is provably the image policy p made of
// instanceID in rotation rot (rotation.Proven).
func rotationImage(img types.Image, p rotation.Policy, rot rotation.Rotation, instanceID string) bool {
	return rotation.Proven(toImage(img, ""), p.Name, instanceID, rot.ID)
}

// newestImages returns, per instance, the newest image of policy made of
// it in the client's region that is provably amirotate's (forged tags on
// another image cannot make an instance look newer or rotated already).
func newestImages(ctx context.Context, client ec2.DescribeImagesAPIClient, region, policy string, instanceIDs []string) (map[string]rotation.Image, error) {
	images, err := imagesOfInstances(ctx, client, instanceIDs,
		ec2x.Filter("tag:"+rotation.TagPolicy, policy), ec2x.Filter("tag:"+rotation.TagCreatedBy, rotation.CreatedBy))
	if err != nil {
		return nil, fmt.Errorf("listing the images of policy %s in %s: %w", policy, region, err)
	}
	newest := map[string]rotation.Image{}
	for _, im := range images {
		img := toImage(im, region)
		if rotation.Unproven(img, policy) != "" {
			continue
		}
		inst := img.Tags[rotation.TagInstanceID]
		if prev, ok := newest[inst]; !ok || img.Tags[rotation.TagRotation] > prev.Tags[rotation.TagRotation] {
			newest[inst] = img
		}
	}
	return newest, nil
}

// imagesOfInstances lists the account's images that match filters and are
// tagged for one of instanceIDs (see imagesMatching).
func imagesOfInstances(ctx context.Context, client ec2.DescribeImagesAPIClient, instanceIDs []string, filters ...types.Filter) ([]types.Image, error) {
	return imagesMatching(ctx, client, "tag:"+rotation.TagInstanceID, instanceIDs, filters...)
}

// imagesMatching lists the account's images whose filter name matches one
// of values and that match filters: one paginated DescribeImages per
// MaxFilterValues values (more than a batch ever has in a region).
// Deprecated and disabled images are included: a name is taken by them
// too, a disabled image must not look gone, and it keeps its tags.
func imagesMatching(ctx context.Context, client ec2.DescribeImagesAPIClient, name string, values []string, filters ...types.Filter) ([]types.Image, error) {
	var out []types.Image
	for chunk := range slices.Chunk(values, ec2x.MaxFilterValues) {
		pages := ec2.NewDescribeImagesPaginator(client, &ec2.DescribeImagesInput{
			Owners:            []string{"self"},
			Filters:           append(slices.Clone(filters), ec2x.Filter(name, chunk...)),
			IncludeDeprecated: aws.Bool(true),
			IncludeDisabled:   aws.Bool(true),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, page.Images...)
		}
	}
	return out, nil
}
