package steps

import (
	"context"
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

// What a retention pass reads and decides before it deletes anything.

// plannedPrefix marks the stand-ins for images a dry run did not make.
const plannedPrefix = "planned:"

// withPlanned adds, in a dry run, a stand-in for each image this rotation
// would have made in region, so the plan counts it as the newest image the
// way a real run does (otherwise a dry run would report one deletion too
// few per scope). The stand-ins never reach the report.
func withPlanned(images []rotation.Image, region string, job retentionJob) ([]rotation.Image, map[string]bool) {
	planned := job.planned
	if job.preview {
		planned = previewRecords(images, region, job)
	}
	if len(planned) == 0 {
		return images, nil
	}
	synthetic := map[string]bool{}
	for _, rec := range planned {
		if rec.Region != region {
			continue
		}
		id := plannedPrefix + rec.InstanceID + ":" + rec.Region
		tags := map[string]string{
			rotation.TagPolicy:     job.policy.Name,
			rotation.TagInstanceID: rec.InstanceID,
			rotation.TagCreatedBy:  rotation.CreatedBy,
			rotation.TagRotation:   job.rotationID,
		}
		if rec.Region != job.home {
			// A copy: a dry run has no source image id, but the planner
			// only needs to know it is one (copies may have their own
			// retention).
			tags[rotation.TagSourceImage] = rec.SourceImageID
			if rec.SourceImageID == "" {
				tags[rotation.TagSourceImage] = plannedPrefix + rec.InstanceID
			}
			tags[rotation.TagSourceRegion] = job.home
		}
		images = append(images, rotation.Image{
			ID:        id,
			Region:    region,
			Name:      rotation.ImageName(job.policy.Name, rec.InstanceID, job.rotationID),
			State:     rotation.StateAvailable,
			CreatedAt: job.now,
			Tags:      tags,
		})
		synthetic[id] = true
	}
	return images, synthetic
}

// previewRecords are the images the next rotation makes in region: one for
// each instance with a provable image of the policy there.
func previewRecords(images []rotation.Image, region string, job retentionJob) []rotation.Record {
	seen := map[string]bool{}
	var out []rotation.Record
	for _, img := range images {
		id := img.Tags[rotation.TagInstanceID]
		if seen[id] || rotation.Unproven(img, job.policy.Name) != "" {
			continue
		}
		seen[id] = true
		out = append(out, rotation.Record{InstanceID: id, Region: region, State: rotation.StatePlanned})
	}
	return out
}

// plan runs the planner until every image it wants to delete has had its
// references read: first without references (cheap: most images are kept,
// and only delete candidates need the reference calls), then with the
// references of the candidates. If a plan with references proposes an image
// whose references were not read, those are read and the plan is made
// again; after planRounds, anything still unread is kept. The references
// moved gives for an instance (those the next rotation moves away from its
// images) are left out: only a preview has moved, nil elsewhere.
func (r *Retention) plan(ctx context.Context, region string, in rotation.PlanInput, moved func(instanceID string) []string) ([]rotation.Decision, error) {
	instanceOf := map[string]string{}
	for _, img := range in.Images {
		instanceOf[img.ID] = img.Tags[rotation.TagInstanceID]
	}
	checked := map[string]bool{}
	in.References = map[string][]string{}
	in.Usage = map[string][]rotation.UsageReport{}
	in.UsageErrors = map[string]string{}
	index := map[string]int{}
	for i, img := range in.Images {
		index[img.ID] = i
	}
	cl := r.EC2.In(region)
	decisions := rotation.PlanRetention(in)
	for range planRounds {
		var fresh, sharing, usage []string
		for _, d := range decisions {
			if strings.HasPrefix(d.ImageID, plannedPrefix) {
				continue
			}
			switch {
			case d.Delete && !checked[d.ImageID]:
				fresh = append(fresh, d.ImageID)
			case d.Needs == rotation.NeedSharing && in.Images[index[d.ImageID]].Sharing == nil:
				sharing = append(sharing, d.ImageID)
			case d.Needs == rotation.NeedUsage:
				if _, read := in.Usage[d.ImageID]; !read {
					if _, failed := in.UsageErrors[d.ImageID]; !failed {
						usage = append(usage, d.ImageID)
					}
				}
			}
		}
		if len(fresh)+len(sharing)+len(usage) == 0 {
			break
		}
		for _, id := range sharing {
			s, err := launchPermissionsOf(ctx, cl, id)
			if err != nil {
				return nil, err
			}
			in.Images[index[id]].Sharing = s
		}
		if len(usage) > 0 {
			in.UsageReadAt = r.now()
			reports, failed := r.usageReports(ctx, cl, usage)
			maps.Copy(in.Usage, reports)
			maps.Copy(in.UsageErrors, failed)
		}
		if len(fresh) == 0 {
			decisions = rotation.PlanRetention(in)
			continue
		}
		refs, err := r.references(ctx, region, fresh)
		if err != nil {
			return nil, err
		}
		for _, id := range fresh {
			checked[id] = true
			if moved != nil {
				refs[id] = withoutMoved(refs[id], moved(instanceOf[id]))
			}
			if len(refs[id]) > 0 {
				in.References[id] = refs[id]
			}
		}
		decisions = rotation.PlanRetention(in)
	}
	for i, d := range decisions {
		veto := ""
		switch {
		case !d.Delete:
		case !checked[d.ImageID]:
			veto = "its references could not be checked in this run"
		case in.Hold[d.InstanceID] != "":
			// The planner honours Hold; this makes sure of it.
			veto = rotation.ReasonHold + ": " + in.Hold[d.InstanceID]
		case in.Scope != nil && !in.Scope[d.InstanceID]:
			veto = rotation.ReasonOutOfScope
		}
		if veto != "" {
			decisions[i].Delete = false
			decisions[i].SnapshotIDs = nil
			decisions[i].Reason = veto
		}
		if d.Needs != "" && !d.Delete {
			// Still undecided after the last round: kept, as its reason says.
			decisions[i].Needs = ""
		}
	}
	return decisions, nil
}

// withoutMoved returns refs without those that name a resource in moved
// ("launch-template lt-1" also drops "launch-template lt-1 version 3
// (default)"), nor the Auto Scaling groups that follow a moved template
// through $Default or $Latest: publish's new version is both, so those
// groups move with it. A group pinned to a version number stays.
func withoutMoved(refs, moved []string) []string {
	if len(moved) == 0 {
		return refs
	}
	return slices.DeleteFunc(slices.Clone(refs), func(ref string) bool {
		return slices.ContainsFunc(moved, func(m string) bool {
			if ref == m || strings.HasPrefix(ref, m+" ") {
				return true
			}
			template, ok := strings.CutPrefix(m, "launch-template ")
			// The last parenthesis is amirotate's (a group's name may hold one).
			use := ref[max(strings.LastIndex(ref, " (launch template "), 0):]
			return ok && strings.HasPrefix(ref, "auto-scaling-group ") && strings.HasPrefix(use, " (launch template "+template+" version ") &&
				(strings.HasSuffix(use, " via $Default)") || strings.HasSuffix(use, " via $Latest)"))
		})
	})
}

// limit returns MaxResults for a listing: the test override, else def
// (nil when def is 0: the API's default page).
func (r *Retention) limit(def int32) *int32 {
	if r.pageSize > 0 {
		return aws.Int32(r.pageSize)
	}
	if def == 0 {
		return nil
	}
	return aws.Int32(def)
}

// listImages lists the policy's managed images in region (all of them, or
// those of job.instanceIDs), deprecated and disabled ones included: both are
// still images with snapshots that cost money and may still be in use.
func (r *Retention) listImages(ctx context.Context, cl ec2x.RetentionEC2, region string, job retentionJob) ([]rotation.Image, error) {
	base := []types.Filter{
		ec2x.Filter("tag:"+rotation.TagPolicy, job.policy.Name),
		ec2x.Filter("tag:"+rotation.TagCreatedBy, rotation.CreatedBy),
	}
	var groups [][]string
	if job.instanceIDs == nil {
		groups = [][]string{nil}
	} else {
		groups = slices.Collect(slices.Chunk(job.instanceIDs, filterChunk))
	}
	wanted := map[string]bool{}
	for _, id := range job.instanceIDs {
		wanted[id] = true
	}
	// No de-duplication here: an image listed twice means the listing is
	// wrong, and the planner keeps such an image (duplicate-listing).
	var out []rotation.Image
	for _, ids := range groups {
		filters := slices.Clone(base)
		if ids != nil {
			filters = append(filters, ec2x.Filter("tag:"+rotation.TagInstanceID, ids...))
		}
		p := ec2.NewDescribeImagesPaginator(cl, &ec2.DescribeImagesInput{
			Owners:            []string{"self"},
			Filters:           filters,
			IncludeDeprecated: aws.Bool(true),
			IncludeDisabled:   aws.Bool(true),
			MaxResults:        r.limit(1000),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("listing images of policy %s: %w", job.policy.Name, err)
			}
			for _, im := range page.Images {
				img := toImage(im, region)
				// The filters are the first guard; checking the tags again
				// here means an API that ignored a filter still cannot make
				// retention touch another policy's (or nobody's) image.
				if img.Tags[rotation.TagPolicy] != job.policy.Name ||
					img.Tags[rotation.TagCreatedBy] != rotation.CreatedBy ||
					(job.instanceIDs != nil && !wanted[img.Tags[rotation.TagInstanceID]]) {
					continue
				}
				// The others pass neither prunes nor reports this rotation's
				// targets: their images are not kept in memory (at 10,000
				// instances they are most of the policy's images).
				if job.exclude[img.Tags[rotation.TagInstanceID]] {
					continue
				}
				out = append(out, img)
			}
		}
	}
	return out, nil
}
