package steps

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Tag finishes the batch's new images once they and their copies are
// available: it moves amirotate:latest to the new image of each instance in each region (batched
// CreateTags/DeleteTags per region), sets the deprecation time and shares the
// images (launch permission) with the policy's accounts, organizations and
// OUs, and their snapshots (create-volume permission) with its accounts;
// public ("all") only with allowPublic.
type Tag struct {
	EC2 ec2x.Regional[ec2x.TagEC2]
	Env
}

// Handle tags the batch. Every call it makes is idempotent, so a retry
// repeats it safely. Failures of single images are reported on their record.
func (s *Tag) Handle(ctx context.Context, in Batch) (Batch, error) {
	return classified(s.handle(ctx, in))
}

func (s *Tag) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, s.EC2, s.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = s.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	p := bc.policy
	b.Images = slices.Clone(b.Images) // never write into the caller's records
	b.Policy = p
	b.Rotation.Home = bc.home
	if p.DryRun {
		// Nothing to tag: a dry run made no images.
		return b, nil
	}

	byRegion := map[string][]int{} // region → indexes of new available images
	for i, r := range b.Images {
		if r.State == rotation.StateAvailable && r.ImageID != "" {
			byRegion[r.Region] = append(byRegion[r.Region], i)
		}
	}
	regions := slices.Sorted(maps.Keys(byRegion))
	errs := make([]error, len(regions))
	var mu sync.Mutex // guards b.Images[*].Error
	g := workers()
	for i, region := range regions {
		g.Go(func() error {
			errs[i] = s.tagRegion(ctx, &b, p, region, byRegion[region], &mu)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}
	for i, err := range errs {
		if err != nil {
			return Batch{}, fmt.Errorf("tagging in %s: %w", regions[i], err)
		}
	}
	recount(&b, p)
	return b, nil
}

// tagRegion does one region's work. Errors that concern the whole region
// (the latest-tag move) are returned; per-image ones go on the record,
// unless a retry may fix them.
func (s *Tag) tagRegion(ctx context.Context, b *Batch, p rotation.Policy, region string, idx []int, mu *sync.Mutex) error {
	client := s.EC2.In(region)
	var (
		instances []string
		isNew     = map[string]bool{}
	)
	for _, i := range idx {
		r := b.Images[i]
		instances = append(instances, r.InstanceID)
		isNew[r.ImageID] = true
	}

	// The new images as EC2 has them: their snapshots are read from the
	// images, never taken from the records, and only from images provably
	// this rotation's (rotation.Proven). Tagging a snapshot marks it as ours
	// (the orphan sweep may delete it one day); sharing one exposes it:
	// neither may follow a record that names another image or snapshot (a
	// hand-made input).
	found, err := describeImagesByID(ctx, client, slices.Collect(maps.Keys(isNew)))
	if err != nil {
		return fmt.Errorf("reading the new images: %w", err)
	}
	own := map[string][]string{} // image → its snapshots
	for _, i := range idx {
		r := &b.Images[i]
		img, ok := found[r.ImageID]
		switch {
		case !ok || !rotationImage(img, p, b.Rotation, r.InstanceID):
			mu.Lock()
			r.Error = fmt.Sprintf("image %s is not provably this rotation's image of %s; not marked latest, shared or deprecated", r.ImageID, r.InstanceID)
			mu.Unlock()
		case rotation.RolledBack(ec2x.TagMap(img.Tags)):
			// A rerun of a rotation rolled back from: its image stays
			// unpublished (and unshared).
			mu.Lock()
			r.Error = errRolledBack(r.ImageID, ec2x.TagMap(img.Tags)).Error()
			mu.Unlock()
		default:
			own[r.ImageID] = ec2x.SnapshotIDs(img)
		}
	}

	// The previous latest images of these instances in this region. Only
	// provably ours are untagged (someone else's image is not ours to
	// change), and an instance whose latest is of a later rotation keeps it:
	// latest never moves backwards.
	previous := map[string][]string{} // instance → its previous latest images
	newer := map[string]string{}      // instance → the later rotation of its latest
	latest, err := imagesOfInstances(ctx, client, instances,
		ec2x.Filter("tag:"+rotation.TagLatest, rotation.LatestValue), ec2x.Filter("tag:"+rotation.TagPolicy, p.Name))
	if err != nil {
		return fmt.Errorf("listing the previous latest images: %w", err)
	}
	for _, img := range latest {
		im := toImage(img, region)
		if isNew[im.ID] || rotation.Unproven(im, p.Name) != "" {
			continue
		}
		inst, rot := im.Tags[rotation.TagInstanceID], im.Tags[rotation.TagRotation]
		if rot > b.Rotation.ID {
			newer[inst] = rot
		} else {
			previous[inst] = append(previous[inst], im.ID)
		}
	}
	var newIDs, previousIDs []string
	for _, i := range idx {
		r := &b.Images[i]
		if _, ok := own[r.ImageID]; !ok {
			continue
		}
		if rot, ok := newer[r.InstanceID]; ok {
			if !b.Rotation.Backfill { // a backfill asked for exactly this
				mu.Lock()
				r.Error = fmt.Sprintf("the latest image of %s is of a later rotation (%s); latest stays there", r.InstanceID, rot)
				mu.Unlock()
			}
			continue
		}
		newIDs = append(newIDs, r.ImageID)
		previousIDs = append(previousIDs, previous[r.InstanceID]...)
	}
	slices.Sort(previousIDs)
	previousIDs = slices.Compact(previousIDs)
	// Tag the new ones first: whoever looks for the latest image always
	// finds one (two for a moment, never none).
	for chunk := range slices.Chunk(newIDs, ec2x.MaxTagResources) {
		_, err := client.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: chunk,
			Tags:      ec2x.Tags(map[string]string{rotation.TagLatest: rotation.LatestValue}),
		})
		audit(ctx, "CreateTags", region, chunk, "mark the new images "+rotation.TagLatest, err)
		if err != nil {
			return fmt.Errorf("tagging the new images latest: %w", err)
		}
	}
	for chunk := range slices.Chunk(previousIDs, ec2x.MaxTagResources) {
		_, err := client.DeleteTags(ctx, &ec2.DeleteTagsInput{
			Resources: chunk,
			Tags:      []types.Tag{{Key: aws.String(rotation.TagLatest)}},
		})
		audit(ctx, "DeleteTags", region, chunk, "the previous images are no longer "+rotation.TagLatest, err)
		if err != nil && !ec2x.IsNotFound(err) {
			return fmt.Errorf("removing latest from the previous images: %w", err)
		}
	}

	var deprecateAt time.Time
	if p.DeprecateAfterDays > 0 {
		deprecateAt = b.Rotation.Time.AddDate(0, 0, p.DeprecateAfterDays).UTC().Truncate(time.Minute)
	}
	shares := p.Shares()
	if deprecateAt.IsZero() && shares.Empty() {
		return nil
	}

	var (
		emu   sync.Mutex
		retry error
	)
	now := s.now()
	g := workers()
	for _, i := range idx {
		if _, ok := own[b.Images[i].ImageID]; !ok {
			continue // not provably ours: never shared or deprecated
		}
		g.Go(func() error {
			mu.Lock()
			r := b.Images[i]
			mu.Unlock()
			var problems []string
			fail := func(what string, err error) {
				if ec2x.IsRetryable(err) {
					emu.Lock()
					retry = fmt.Errorf("%s %s: %w", what, r.ImageID, err)
					emu.Unlock()
				}
				problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			}
			if !deprecateAt.IsZero() {
				if deprecateAt.After(now) {
					_, err := client.EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{
						ImageId: aws.String(r.ImageID), DeprecateAt: aws.Time(deprecateAt),
					})
					audit(ctx, "EnableImageDeprecation", region, []string{r.ImageID}, "deprecateAfterDays: at "+deprecateAt.Format(time.RFC3339), err)
					if err != nil {
						fail("setting deprecation", err)
					}
				} else {
					problems = append(problems, fmt.Sprintf("deprecation time %s is past; not set", deprecateAt.Format(time.RFC3339)))
				}
			}
			if !shares.Empty() {
				// Adding a permission the image already has changes nothing,
				// so a retry repeats the call safely.
				_, err := client.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
					ImageId: aws.String(r.ImageID), LaunchPermission: &types.LaunchPermissionModifications{Add: launchPermissions(shares)},
				})
				audit(ctx, "ModifyImageAttribute", region, []string{r.ImageID}, fmt.Sprintf("shareWith: %v", p.ShareWith), err)
				if err != nil {
					fail("sharing image", err)
				}
			}
			// Snapshots go to the named accounts only. Launching a shared
			// image needs no access to its snapshots; the accounts get them
			// to copy the image, as before. Organizations and OUs cannot be
			// given snapshots (ModifySnapshotAttribute takes account ids),
			// and a public snapshot would expose the disk to every account.
			if users := shares.Accounts; len(users) > 0 {
				for _, sn := range own[r.ImageID] {
					_, err := client.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
						SnapshotId:    aws.String(sn),
						Attribute:     types.SnapshotAttributeNameCreateVolumePermission,
						OperationType: types.OperationTypeAdd,
						UserIds:       users,
					})
					audit(ctx, "ModifySnapshotAttribute", region, []string{sn}, fmt.Sprintf("shareWith: %v (snapshot of %s)", users, r.ImageID), err)
					if err != nil {
						fail("sharing snapshot "+sn, err)
					}
				}
			}
			if len(problems) > 0 {
				mu.Lock()
				b.Images[i].Error = strings.Join(problems, "; ")
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	return retry
}

// launchPermissions are the launch permissions that share an image with
// the targets: accounts, organizations, OUs and, only when the policy
// allows it, everyone.
func launchPermissions(t rotation.ShareTargets) []types.LaunchPermission {
	var out []types.LaunchPermission
	for _, a := range t.Accounts {
		out = append(out, types.LaunchPermission{UserId: aws.String(a)})
	}
	for _, o := range t.Organizations {
		out = append(out, types.LaunchPermission{OrganizationArn: aws.String(o)})
	}
	for _, ou := range t.OUs {
		out = append(out, types.LaunchPermission{OrganizationalUnitArn: aws.String(ou)})
	}
	if t.Public {
		out = append(out, types.LaunchPermission{Group: types.PermissionGroupAll})
	}
	return out
}
