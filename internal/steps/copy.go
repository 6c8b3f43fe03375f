package steps

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

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
	Clients *ec2x.Clients
	Now     func() time.Time
}

// ec2 is the step's client for region, typed to the calls it may make
// (its IAM role grants exactly those: ec2x.Actions).
func (s *Copy) ec2(region string) ec2x.CopyEC2 { return s.Clients.EC2(region) }

// CopyLimitCode is EC2's answer when a destination region has too many
// copies in progress.
const CopyLimitCode = "ResourceLimitExceeded"

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
	bc, err := checkBatch(b, s.Clients)
	if err != nil {
		return Batch{}, err
	}
	p := bc.policy
	now := clockNow(s.Now)
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
	ec2x.ForEach(ctx, len(regions), ec2x.Workers, func(i int) {
		results[i] = s.copyRegion(ctx, b, p, bc.home, regions[i], jobs[regions[i]], sourceTags)
	})
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
	imgs, err := describeImagesByID(ctx, s.ec2(home), ids)
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
	client := s.ec2(region)

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
	ec2x.ForEach(ctx, len(jobs), ec2x.Workers, func(i int) {
		j, r := jobs[i], &recs[i]
		if img, ok := adopt[r.Name]; ok && ec2x.TagMap(img.Tags)[rotation.TagSourceImage] == r.SourceImageID {
			r.ImageID, r.State, r.Error = aws.ToString(img.ImageId), rotation.StatePending, ""
			return
		}
		mu.Lock()
		skip := limited
		mu.Unlock()
		if skip {
			r.State, r.Error = rotation.StateDeferred, region+" is at its concurrent-copy limit"
			return
		}
		id, err := copyImage(ctx, client, p, b.Rotation, home, j, sourceTags[j.source.ImageID])
		switch {
		case err == nil:
			r.ImageID, r.State, r.Error = id, rotation.StatePending, ""
		case ec2x.Code(err) == CopyLimitCode:
			mu.Lock()
			limited = true
			mu.Unlock()
			r.State, r.Error = rotation.StateDeferred, errText(err)
		case ec2x.IsRetryable(err):
			// Throttling that outlived the SDK's retries: try again next round.
			r.State, r.Error = rotation.StateDeferred, errText(err)
		default:
			r.State, r.Error = rotation.StateError, errText(err)
		}
	})
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
	out, err := client.CopyImage(ctx, in)
	if err == nil {
		return aws.ToString(out.ImageId), nil
	}
	if ec2x.Code(err) != "InvalidAMIName.Duplicate" {
		return "", fmt.Errorf("copying %s to %s: %w", src.ImageID, j.target.Region, err)
	}
	img, found, lerr := imageByName(ctx, client, src.Name)
	switch {
	case lerr != nil:
		return "", fmt.Errorf("finding copy %s in %s, which already exists: %w", src.Name, j.target.Region, lerr)
	case !found:
		return "", ec2x.RetryableError{Code: "InvalidAMIName.Duplicate",
			Message: fmt.Sprintf("copy %s exists in %s but is not listed yet", src.Name, j.target.Region)}
	case ec2x.TagMap(img.Tags)[rotation.TagSourceImage] != src.ImageID:
		return "", fmt.Errorf("image name %s is taken in %s by %s, which is not a copy of %s", src.Name, j.target.Region, aws.ToString(img.ImageId), src.ImageID)
	}
	return aws.ToString(img.ImageId), nil
}
