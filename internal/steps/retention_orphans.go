package steps

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// sweepOrphans deletes the policy's snapshots whose image is gone: those a
// deregistration left behind (a snapshot delete that failed, a snapshot
// still attached for a moment after its image went). A snapshot is an
// orphan when it is provably the policy's (rotation.SnapshotUnproven: its
// tags and the description EC2 wrote agree), is complete (or
// errored) and older than orphanMinAge, and no image of this account, of any
// policy or none, lists it. Returns region → deleted (or, in a dry run,
// would-be-deleted) ids and snapshot → error for those that failed.
func (r *Retention) sweepOrphans(ctx context.Context, p rotation.Policy, regions []string) (map[string][]string, map[string]string, error) {
	type swept struct {
		deleted []string
		failed  map[string]string
	}
	results, err := eachRegion(regions, "orphan sweep", func(region string) (swept, error) {
		d, f, err := r.sweepRegion(ctx, p, region)
		return swept{d, f}, err
	})
	var orphans map[string][]string
	var failed map[string]string
	for i, res := range results {
		if len(res.deleted) > 0 {
			if orphans == nil {
				orphans = map[string][]string{}
			}
			orphans[regions[i]] = res.deleted
		}
		for k, v := range res.failed {
			setReason(&failed, k, v)
		}
	}
	return orphans, failed, err
}

func (r *Retention) sweepRegion(ctx context.Context, p rotation.Policy, region string) ([]string, map[string]string, error) {
	cl := r.EC2.In(region)
	cutoff := r.now().Add(-orphanMinAge)
	var candidates []string
	sp := ec2.NewDescribeSnapshotsPaginator(cl, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters: []types.Filter{
			ec2x.Filter("tag:"+rotation.TagPolicy, p.Name),
			ec2x.Filter("tag:"+rotation.TagCreatedBy, rotation.CreatedBy),
		},
		MaxResults: r.limit(1000),
	})
	for sp.HasMorePages() {
		page, err := sp.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("listing snapshots of policy %s: %w", p.Name, err)
		}
		for _, s := range page.Snapshots {
			// A tag alone proves nothing: the description EC2 wrote when
			// amirotate's CreateImage or CopyImage made the snapshot must
			// agree with its tags. A pending snapshot may belong to an image
			// still being made; a young one to an image that does not list
			// it yet.
			_, unproven := rotation.SnapshotUnproven(aws.ToString(s.Description), ec2x.TagMap(s.Tags), p.Name)
			if unproven != "" || s.State == types.SnapshotStatePending || s.StartTime == nil || !s.StartTime.Before(cutoff) {
				continue
			}
			candidates = append(candidates, aws.ToString(s.SnapshotId))
		}
	}
	if len(candidates) == 0 {
		return nil, nil, nil
	}
	used, err := r.snapshotsInUse(ctx, cl, candidates)
	if err != nil {
		return nil, nil, err
	}
	var orphans []string
	for _, id := range candidates {
		if !used[id] {
			orphans = append(orphans, id)
		}
	}
	slices.Sort(orphans)
	if p.DryRun {
		return orphans, nil, nil
	}
	// Gone already is not this run's deletion; in use means an image we
	// could not see uses it: not an orphan.
	var d deletion
	deleteSnapshots(ctx, cl, region, orphans, "orphan: listed by no image", &d)
	var failed map[string]string
	for id, err := range d.failed {
		setReason(&failed, id, fmt.Sprintf("deleting orphan snapshot in %s: %s", region, err))
	}
	deleted := d.deleted
	slices.Sort(deleted)
	return deleted, failed, nil
}

// snapshotsInUse returns which of ids some image of this account lists
// (any state, deprecated and disabled included), asking EC2 by snapshot id.
func (r *Retention) snapshotsInUse(ctx context.Context, cl ec2x.RetentionEC2, ids []string) (map[string]bool, error) {
	used := map[string]bool{}
	for c := range slices.Chunk(ids, filterChunk) {
		p := ec2.NewDescribeImagesPaginator(cl, &ec2.DescribeImagesInput{
			Owners:            []string{"self"},
			Filters:           []types.Filter{ec2x.Filter("block-device-mapping.snapshot-id", c...)},
			IncludeDeprecated: aws.Bool(true),
			IncludeDisabled:   aws.Bool(true),
			MaxResults:        r.limit(1000),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("finding images of snapshots: %w", err)
			}
			for _, im := range page.Images {
				for _, id := range ec2x.SnapshotIDs(im) {
					used[id] = true
				}
			}
		}
	}
	return used, nil
}
