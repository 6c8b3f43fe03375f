package steps

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Poll reads the state of the batch's pending images with one DescribeImages
// per region, whatever their number, cleans up images that ended failed
// (deregistered with their snapshots, reported in Cleanup), marks images
// still pending at the timeout, and sets the counts and the next wait.
type Poll struct {
	EC2 ec2x.Regional[ec2x.PollEC2]
	Env
}

// MissingPolls is how many polls an image may be missing from
// DescribeImages (EC2 is eventually consistent right after CreateImage and
// CopyImage) before it counts as gone.
const MissingPolls = 3

// Handle polls once.
func (s *Poll) Handle(ctx context.Context, in Batch) (Batch, error) {
	return classified(s.handle(ctx, in))
}

// regionPoll is what one region's DescribeImages returned.
type regionPoll struct {
	images map[string]types.Image
	err    error
}

func (s *Poll) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, s.EC2, s.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = s.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	p := bc.policy
	now := s.now()
	due := deadline(b, p)
	b.Images = slices.Clone(b.Images) // never write into the caller's records

	pending := map[string][]string{} // region → image ids
	for _, r := range b.Images {
		if r.State == rotation.StatePending && r.ImageID != "" {
			pending[r.Region] = append(pending[r.Region], r.ImageID)
		}
	}
	regions := slices.Sorted(maps.Keys(pending))
	results := make([]regionPoll, len(regions))
	g := workers()
	for i, region := range regions {
		g.Go(func() error {
			images, err := describeImagesByID(ctx, s.EC2.In(region), pending[region])
			results[i] = regionPoll{images: images, err: err}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}
	seen := map[string]types.Image{}
	for i, res := range results {
		if res.err != nil {
			// Nothing changed yet: the retry polls every region again.
			return Batch{}, fmt.Errorf("describing images in %s: %w", regions[i], res.err)
		}
		maps.Copy(seen, res.images)
	}

	failed := map[string][]int{} // region → record indexes
	for i := range b.Images {
		r := &b.Images[i]
		if r.State != rotation.StatePending || r.ImageID == "" {
			if r.State == rotation.StateDeferred && !now.Before(due) {
				r.State, r.Error = rotation.StateTimedOut, fmt.Sprintf("copy not started before the timeout (%d minutes): %s", p.TimeoutMinutes, r.Error)
			}
			continue
		}
		img, ok := seen[r.ImageID]
		switch {
		case !ok && b.Polls+1 >= MissingPolls:
			r.State, r.Error = rotation.StateError, fmt.Sprintf("image %s is no longer listed by EC2 (deregistered outside amirotate?)", r.ImageID)
		case !ok:
		case imageState(img) == rotation.StateAvailable:
			r.State, r.Error = rotation.StateAvailable, ""
			r.SnapshotIDs = ec2x.SnapshotIDs(img)
			r.SizeGiB = toImage(img, r.Region).SizeGiB
		case img.State == types.ImageStateDisabled:
			// A person disabled it after it became available, which keeps
			// it on purpose: it is neither a usable new image nor a failed
			// one to clean up.
			r.State, r.Error = rotation.StateError, fmt.Sprintf("image %s was disabled outside amirotate; left as it is", r.ImageID)
		case imageState(img) == rotation.StateFailed && !rotationImage(img, p, b.Rotation, r.InstanceID):
			// Cleanup deletes snapshots, so it only takes an image this
			// rotation made; a record can come from a hand-made input.
			r.State, r.Error = rotation.StateError, fmt.Sprintf("image %s ended %s but is not this rotation's image of %s (its amirotate tags differ); left as it is", r.ImageID, img.State, r.InstanceID)
		case imageState(img) == rotation.StateFailed:
			r.State = rotation.StateFailed
			r.SnapshotIDs = ec2x.SnapshotIDs(img)
			r.Error = "image ended " + string(img.State)
			if img.StateReason != nil && aws.ToString(img.StateReason.Message) != "" {
				r.Error += ": " + aws.ToString(img.StateReason.Message)
			}
			failed[r.Region] = append(failed[r.Region], i)
		}
		if r.State == rotation.StatePending && !now.Before(due) {
			r.State, r.Error = rotation.StateTimedOut, fmt.Sprintf("image %s still pending after %d minutes", r.ImageID, p.TimeoutMinutes)
		}
	}

	if !p.DryRun && len(failed) > 0 {
		b.Cleanup = append(slices.Clone(b.Cleanup), s.cleanup(ctx, b, p, failed)...)
	}

	b.Policy = p
	b.Rotation.Home = bc.home
	b.Polls++
	recount(&b, p)
	b.WaitSeconds = waitFor(b, nextWait(p, b.Polls, now, due))
	return b, nil
}

// cleanup deregisters each failed image with its snapshots and deletes any
// snapshot EC2 did not delete with it, including snapshots the image does
// not list (found by amirotate's tags for that instance and rotation).
// What it could not do is reported in the cleanup record (state error)
// rather than failing the poll: the image is deregistered at once, so a
// retried poll would not see it again, and the orphan sweep of retention
// deletes leftover amirotate snapshots later.
func (s *Poll) cleanup(ctx context.Context, b Batch, p rotation.Policy, failed map[string][]int) []rotation.Record {
	var (
		mu  sync.Mutex
		out []rotation.Record
	)
	regions := slices.Sorted(maps.Keys(failed))
	g := workers()
	for _, region := range regions {
		g.Go(func() error {
			var recs []rotation.Record
			for _, idx := range failed[region] {
				recs = append(recs, b.Images[idx])
			}
			cleaned := cleanupRegion(ctx, s.EC2.In(region), p, b.Rotation, recs)
			mu.Lock()
			out = append(out, cleaned...)
			mu.Unlock()
			return nil
		})
	}
	g.Wait()
	sortRecords(out)
	return out
}

// cleanupRegion cleans the failed images of one region.
func cleanupRegion(ctx context.Context, client ec2x.PollEC2, p rotation.Policy, rot rotation.Rotation, recs []rotation.Record) []rotation.Record {
	// Snapshots CreateImage/CopyImage made for the failed images, found by
	// their tags and proven by the description EC2 wrote (which names the
	// image): a tag alone would let anyone get a snapshot deleted here.
	byImage := map[string][]string{}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.InstanceID)
	}
	pages := ec2.NewDescribeSnapshotsPaginator(client, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters: []types.Filter{
			ec2x.Filter("tag:"+rotation.TagPolicy, p.Name),
			ec2x.Filter("tag:"+rotation.TagRotation, rot.ID),
			ec2x.Filter("tag:"+rotation.TagInstanceID, ids...),
		},
	})
	var listErr error
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			listErr = fmt.Errorf("listing snapshots of failed images: %w", err)
			break
		}
		for _, sn := range page.Snapshots {
			tags := ec2x.TagMap(sn.Tags)
			image, why := rotation.SnapshotUnproven(aws.ToString(sn.Description), tags, p.Name)
			if why != "" || tags[rotation.TagRotation] != rot.ID {
				continue
			}
			byImage[image] = append(byImage[image], aws.ToString(sn.SnapshotId))
		}
	}

	out := make([]rotation.Record, 0, len(recs))
	for _, r := range recs {
		c := rotation.Record{InstanceID: r.InstanceID, Region: r.Region, ImageID: r.ImageID, Name: r.Name,
			State: rotation.StateFailed, SourceImageID: r.SourceImageID}
		snaps := map[string]bool{}
		for _, id := range r.SnapshotIDs {
			snaps[id] = true
		}
		for _, id := range byImage[r.ImageID] {
			snaps[id] = true
		}
		var problems []string
		if listErr != nil {
			problems = append(problems, listErr.Error())
		}
		d := deleteImage(ctx, client, r.Region, r.ImageID, slices.Sorted(maps.Keys(snaps)), "the new image ended failed")
		if d.err != nil {
			problems = append(problems, d.err.Error())
		}
		c.SnapshotIDs = slices.Concat(d.deleted, d.gone)
		for _, why := range []map[string]string{d.inUse, d.failed} {
			for _, id := range slices.Sorted(maps.Keys(why)) {
				problems = append(problems, fmt.Sprintf("deleting snapshot %s: %s", id, why[id]))
			}
		}
		slices.Sort(c.SnapshotIDs)
		if len(problems) > 0 {
			c.State = rotation.StateError
			c.Error = strings.Join(problems, "; ")
		}
		out = append(out, c)
	}
	return out
}
