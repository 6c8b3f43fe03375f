package steps

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Copy starts CopyImage for each available source image into each copyTo
// region that has no copy yet (or a deferred one), calling the destination
// region. A retried invocation makes no second copy: records that have a
// copy are skipped, a copy an earlier attempt started is found by name, and
// the ClientToken is deterministic. A destination at its concurrent-copy
// limit defers its copies (state deferred) for a later round instead of
// failing the rotation.
type Copy struct {
	EC2 ec2x.Regional[ec2x.CopyEC2]
	Env
}

// PlannedImageID stands for the source image a dry run did not make, in the
// planned copy records (a copy record always names its source).
const PlannedImageID = "planned"

// Handle starts the missing copies.
func (s *Copy) Handle(ctx context.Context, in Batch) (Batch, error) {
	return classified(s.handle(ctx, in))
}

// copyJob is one copy to start: source record → destination region.
type copyJob struct {
	source rotation.Record
	target rotation.CopyTarget
	// rec is the index of an existing (deferred) copy record, or -1.
	rec int
}

func (s *Copy) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, s.EC2, s.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = s.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	p := bc.policy
	now := s.now()
	b.Images = slices.Clone(b.Images) // never write into the caller's records

	existing := copyIndex(b.Images)
	jobs := map[string][]copyJob{} // destination region → jobs
	for _, r := range b.Images {
		if !copySource(r, p) {
			continue
		}
		for _, t := range p.CopyTo {
			i, ok := existing[copyKey{r.InstanceID, t.Region}]
			switch {
			case !ok:
				jobs[t.Region] = append(jobs[t.Region], copyJob{source: r, target: t, rec: -1})
			case b.Images[i].State == rotation.StateDeferred:
				jobs[t.Region] = append(jobs[t.Region], copyJob{source: r, target: t, rec: i})
			}
		}
	}

	var sourceTags map[string]map[string]string
	if !p.DryRun && len(jobs) > 0 && len(p.CopyInstanceTags) > 0 {
		// The instance tags a copy carries are the ones its source got.
		if sourceTags, err = s.sourceTags(ctx, bc.home, b.Images); err != nil {
			return Batch{}, err
		}
	}

	regions := slices.Sorted(maps.Keys(jobs))
	results := make([][]rotation.Record, len(regions))
	g := workers()
	for i, region := range regions {
		g.Go(func() error {
			results[i] = s.copyRegion(ctx, b, p, bc.home, region, jobs[region], sourceTags)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}

	deferred := false
	for i, region := range regions {
		for j, rec := range results[i] {
			job := jobs[region][j]
			if job.rec >= 0 {
				b.Images[job.rec] = rec
			} else {
				b.Images = append(b.Images, rec)
			}
			deferred = deferred || rec.State == rotation.StateDeferred
		}
	}

	b.Policy = p
	b.Rotation.Home = bc.home
	recount(&b, p)
	due := deadline(b, p)
	if deferred {
		// Back off further: copies free up slots in minutes.
		b.WaitSeconds = waitFor(b, nextWait(p, b.Polls+1, now, due))
	} else {
		b.WaitSeconds = waitFor(b, nextWait(p, b.Polls, now, due))
	}
	return b, nil
}

// sourceTags reads the tags of the batch's source images (one DescribeImages).
func (s *Copy) sourceTags(ctx context.Context, home string, images []rotation.Record) (map[string]map[string]string, error) {
	var ids []string
	for _, r := range images {
		if r.SourceImageID == "" && r.ImageID != "" {
			ids = append(ids, r.ImageID)
		}
	}
	imgs, err := describeImagesByID(ctx, s.EC2.In(home), ids)
	if err != nil {
		return nil, fmt.Errorf("reading source image tags in %s: %w", home, err)
	}
	out := make(map[string]map[string]string, len(imgs))
	for id, img := range imgs {
		out[id] = ec2x.TagMap(img.Tags)
	}
	return out, nil
}

// copyRegion starts the copies into one region and returns their records,
// in the order of jobs.
func (s *Copy) copyRegion(ctx context.Context, b Batch, p rotation.Policy, home, region string, jobs []copyJob, sourceTags map[string]map[string]string) []rotation.Record {
	recs := make([]rotation.Record, len(jobs))
	for i, j := range jobs {
		src := j.source.ImageID
		if src == "" {
			src = PlannedImageID
		}
		recs[i] = rotation.Record{InstanceID: j.source.InstanceID, Region: region, Name: j.source.Name,
			SourceImageID: src, State: rotation.StatePlanned}
	}
	if p.DryRun {
		return recs
	}
	client := s.EC2.In(region)

	// Copies an earlier attempt started whose records were lost (the
	// invocation timed out after CopyImage): adopt them by name.
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.source.Name
	}
	adopt, err := imagesByName(ctx, client, names)
	if err != nil {
		for i := range recs {
			recs[i].State, recs[i].Error = rotation.StateDeferred, fmt.Sprintf("listing copies in %s: %v", region, err)
		}
		return recs
	}

	var (
		mu      sync.Mutex
		limited bool // the region refused a copy for its concurrent-copy limit
	)
	g := workers()
	for i, j := range jobs {
		g.Go(func() error {
			r := &recs[i]
			if img, ok := adopt[r.Name]; ok && ec2x.TagMap(img.Tags)[rotation.TagSourceImage] == r.SourceImageID {
				r.ImageID, r.State, r.Error = aws.ToString(img.ImageId), rotation.StatePending, ""
				return nil
			}
			mu.Lock()
			skip := limited
			mu.Unlock()
			if skip {
				r.State, r.Error = rotation.StateDeferred, region+" is at its concurrent-copy limit"
				return nil
			}
			id, err := copyImage(ctx, client, p, b.Rotation, home, j, sourceTags[j.source.ImageID])
			switch {
			case err == nil:
				r.ImageID, r.State, r.Error = id, rotation.StatePending, ""
			case ec2x.IsCopyLimit(err):
				mu.Lock()
				limited = true
				mu.Unlock()
				r.State, r.Error = rotation.StateDeferred, errText(err)
			case ec2x.IsNotFound(err):
				// The source must exist: waiting will not bring it back.
				r.State, r.Error = rotation.StateError, errText(ec2x.MustExist(err))
			case ec2x.IsRetryable(err):
				// Throttling that outlived the SDK's retries: try again next round.
				r.State, r.Error = rotation.StateDeferred, errText(err)
			default:
				r.State, r.Error = rotation.StateError, errText(err)
			}
			return nil
		})
	}
	g.Wait()
	return recs
}

// copyImage starts one copy, or finds the one already named like it.
func copyImage(ctx context.Context, client ec2x.CopyEC2, p rotation.Policy, rot rotation.Rotation, home string, j copyJob, sourceTags map[string]string) (string, error) {
	src := j.source
	tags := rotation.CopyTags(p, rot, src.InstanceID, sourceTags, src.ImageID, home)
	in := &ec2.CopyImageInput{
		SourceRegion:      aws.String(home),
		SourceImageId:     aws.String(src.ImageID),
		Name:              aws.String(src.Name),
		Description:       aws.String(rotation.CopyDescription(p.Name, src.InstanceID, rot.ID, src.ImageID, home)),
		ClientToken:       aws.String(rotation.CopyClientToken(rot.ID, src.ImageID, j.target.Region)),
		TagSpecifications: ec2x.TagSpecs(tags, types.ResourceTypeImage, types.ResourceTypeSnapshot),
	}
	if j.target.KMSKeyID != "" {
		in.Encrypted = aws.Bool(true)
		in.KmsKeyId = aws.String(j.target.KMSKeyID)
	}
	create := func() (string, error) {
		out, err := client.CopyImage(ctx, in)
		if err != nil {
			audit(ctx, "CopyImage", j.target.Region, []string{src.ImageID}, "copy of the new image", err)
			return "", fmt.Errorf("copying %s to %s: %w", src.ImageID, j.target.Region, err)
		}
		audit(ctx, "CopyImage", j.target.Region, []string{src.ImageID, aws.ToString(out.ImageId)}, "copy of the new image", nil)
		return aws.ToString(out.ImageId), nil
	}
	ours := func(img types.Image) error {
		if ec2x.TagMap(img.Tags)[rotation.TagSourceImage] != src.ImageID {
			return fmt.Errorf("image name %s is taken in %s by %s, which is not a copy of %s", src.Name, j.target.Region, aws.ToString(img.ImageId), src.ImageID)
		}
		return nil
	}
	id, _, err := createOrAdopt(ctx, client, j.target.Region, src.Name, create, ours)
	return id, err
}
