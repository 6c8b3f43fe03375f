package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Chunk sizes of the calls retention makes.
const (
	// refChunk is DescribeImageReferences' limit on ImageId.N (1..10).
	refChunk = 10
	// filterChunk bounds the values of one filter (instance ids, snapshot
	// ids). EC2 documents no limit for DescribeImages, but requests with
	// hundreds of values risk its request-size limits; 100 is a whole batch
	// (MaxBatchSize) in one call.
	filterChunk = 100
	// deleteWorkers bounds concurrent deletions per region. DeregisterImage
	// and DeleteSnapshot refill at 5/s per account and region: a few calls in
	// flight keep the bucket busy without turning a big prune into a storm.
	deleteWorkers = 4
	// orphanMinAge is how old a snapshot must be before the sweep may call it
	// an orphan: an image being created or copied may not list its snapshots
	// yet.
	orphanMinAge = time.Hour
	// planRounds bounds the plan → references → plan loop (see plan).
	planRounds = 3
	// deleteReserve is the time left before the invocation's deadline at
	// which retention stops starting deletions: a big first prune (keep
	// lowered from 30 to 3 on a large fleet) at EC2's 5 deletions/s can
	// outlast a Lambda's 15 minutes. What is left is reported as deferred
	// and the next run deletes it; the report still reaches the state
	// machine.
	deleteReserve = 30 * time.Second
	// reasonDeferred is the kept reason of a deletion left to the next run.
	reasonDeferred = "deferred: this run's time was used up; the next run deletes it"
)

// Retention deregisters the images a policy no longer keeps and deletes
// their snapshots. The planner (rotation.PlanRetention) decides; this step
// reads what it decides from (images, references) and carries out the plan.
type Retention struct {
	Clients *ec2x.Clients
	// Now is the clock the orphan sweep measures snapshot age with (nil =
	// time.Now). Retention ages count from the rotation time instead.
	Now func() time.Time
	// pageSize overrides MaxResults of every paginated listing (0 = each
	// API's largest page); tests lower it to prove pagination.
	pageSize int32
}

// ec2 and asg hand out the region's clients through the narrow interfaces,
// so the compiler holds the step to the calls its IAM policy grants.
func (r *Retention) ec2(region string) ec2x.RetentionEC2 { return r.Clients.EC2(region) }
func (r *Retention) asg(region string) ec2x.RetentionAutoScaling {
	return r.Clients.AutoScaling(region)
}

// Handle prunes the images of the batch's instances. Only instances whose
// new image (source and every copy) is available this rotation are in
// scope; an instance whose new image failed, timed out or errored is held:
// none of its images go. It fills b.Retention.
func (r *Retention) Handle(ctx context.Context, b Batch) (Batch, error) {
	if err := checkRetentionInput(b.Policy, b.Rotation); err != nil {
		return b, err
	}
	home := r.homeOf(b.Rotation)
	if err := b.Policy.CheckHome(home); err != nil {
		return b, err
	}
	if b.Error != nil {
		// A step of this batch failed: its records may be incomplete, and
		// pruning on incomplete records could take an instance's last image.
		return b, nil
	}
	scope, hold, planned := batchScope(b, home)
	// Held instances are in scope too.
	ids := slices.AppendSeq(slices.Clone(b.InstanceIDs), maps.Keys(scope))
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return b, nil
	}
	job := retentionJob{
		policy:     b.Policy,
		home:       home,
		now:        b.Rotation.Time,
		rotationID: b.Rotation.ID,
		scope:      scope,
		hold:       hold,
		planned:    planned,
		// Every instance of the batch is listed and reported, in scope or not.
		instanceIDs: ids,
	}
	reports, err := r.run(ctx, b.Policy.Regions(home), job)
	if err != nil {
		return b, ec2x.Classify(err)
	}
	b.Retention = reports
	fitReports(b.Retention, batchBudget, func() int { return jsonSize(b) })
	return b, nil
}

// HandleOthers prunes the policy's images of instances outside this
// rotation's targets (in.Exclude): instances that left the selector or were
// terminated stay governed by their images' tags. It also sweeps the
// policy's snapshots whose image is gone.
func (r *Retention) HandleOthers(ctx context.Context, in RetentionOthersIn) (RetentionOthersOut, error) {
	var out RetentionOthersOut
	if err := checkRetentionInput(in.Policy, in.Rotation); err != nil {
		return out, err
	}
	home := r.homeOf(in.Rotation)
	if err := in.Policy.CheckHome(home); err != nil {
		return out, err
	}
	exclude := make(map[string]bool, len(in.Exclude))
	for _, id := range in.Exclude {
		exclude[id] = true
	}
	regions := in.Policy.Regions(home)
	job := retentionJob{
		policy: in.Policy,
		home:   home,
		now:    in.Rotation.Time,
		// scope is filled per region from the listed images: every instance
		// not excluded.
		exclude: exclude,
	}
	reports, err := r.run(ctx, regions, job)
	if err != nil {
		return out, ec2x.Classify(err)
	}
	out.Retention = reports
	orphans, failed, err := r.sweepOrphans(ctx, in.Policy, regions)
	if err != nil {
		return out, ec2x.Classify(err)
	}
	out.Orphans = orphans
	out.OrphansFailed = failed
	fitReports(out.Retention, othersBudget, func() int { return jsonSize(out) })
	return out, nil
}

// Invoke serves both retention states with one function, as the one
// retention Lambda does: the pass over other instances is told apart by its
// "exclude" field, which a Batch never has.
func (r *Retention) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Exclude json.RawMessage `json:"exclude"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, rotation.Invalid("", "retention input: %v", err)
	}
	if probe.Exclude != nil {
		var in RetentionOthersIn
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, rotation.Invalid("", "retention input (others pass): %v", err)
		}
		return r.HandleOthers(ctx, in)
	}
	var b Batch
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, rotation.Invalid("", "retention input (batch): %v", err)
	}
	return r.Handle(ctx, b)
}

// checkRetentionInput names what retention most needs first, then checks
// the policy as every other step does (with CheckHome, once the home region
// is known): a region listed twice, or the home region among the copy
// regions, would be pruned twice at once.
func checkRetentionInput(p rotation.Policy, rot rotation.Rotation) error {
	if rot.Time.IsZero() {
		return rotation.Invalid("rotation.time", "is missing; retention counts image ages from the rotation time")
	}
	if p.Name == "" {
		return rotation.Invalid("policy.name", "is empty; retention only touches images tagged with their policy's name")
	}
	if p.Retention.Keep <= 0 && p.Retention.MaxAgeDays <= 0 {
		return rotation.Invalid("policy.retention", "needs keep or maxAgeDays (or both)")
	}
	return p.Validate()
}

func (r *Retention) homeOf(rot rotation.Rotation) string {
	if rot.Home != "" {
		return rot.Home
	}
	return r.Clients.Home()
}

// batchScope reads the batch's records. An instance is in scope when its
// source image and a copy in every copy region are available (planned, in a
// dry run); it is held when any of its records failed, timed out or
// errored. planned lists the images a dry run would have made, so the dry
// run's plan counts them as a real run would.
func batchScope(b Batch, home string) (scope map[string]bool, hold map[string]string, planned []rotation.Record) {
	done := map[string]map[string]bool{} // instance → regions with its new image
	hold = map[string]string{}
	ok := func(state string) bool {
		return state == rotation.StateAvailable || (b.Policy.DryRun && state == rotation.StatePlanned)
	}
	for _, rec := range b.Images {
		switch rec.State {
		case rotation.StateFailed, rotation.StateTimedOut, rotation.StateError:
			why := fmt.Sprintf("this rotation's image in %s is %s", rec.Region, rec.State)
			if rec.Error != "" {
				why += ": " + rec.Error
			}
			if _, dup := hold[rec.InstanceID]; !dup {
				hold[rec.InstanceID] = why
			}
			continue
		}
		if !ok(rec.State) {
			continue
		}
		if done[rec.InstanceID] == nil {
			done[rec.InstanceID] = map[string]bool{}
		}
		done[rec.InstanceID][rec.Region] = true
		if rec.State == rotation.StatePlanned {
			planned = append(planned, rec)
		}
	}
	scope = map[string]bool{}
	// Held instances are in scope so that the planner reports them as held
	// (it checks scope first); the hold keeps every image of theirs, and
	// region() enforces that again after planning.
	for id := range hold {
		scope[id] = true
	}
	regions := b.Policy.Regions(home)
	for id, got := range done {
		if _, held := hold[id]; held {
			continue
		}
		all := true
		for _, reg := range regions {
			all = all && got[reg]
		}
		if all {
			scope[id] = true
		}
	}
	return scope, hold, planned
}

// retentionJob is one retention pass: the batch's or the others'.
type retentionJob struct {
	policy rotation.Policy
	home   string
	now    time.Time
	// rotationID tags a dry run's stand-in images.
	rotationID string
	// instanceIDs narrows the listing (the batch's instances); nil lists
	// every image of the policy.
	instanceIDs []string
	scope       map[string]bool   // nil: every listed instance not in exclude
	exclude     map[string]bool   // others pass: this rotation's targets, neither pruned nor reported
	hold        map[string]string // instance → why nothing of it may go
	planned     []rotation.Record // dry run: images this rotation would have made
}

// run plans and prunes every region concurrently. A region whose images or
// references cannot be read deletes nothing; its error is returned after the
// other regions finished (the step is idempotent, so the state machine's
// retry redoes only what is left).
func (r *Retention) run(ctx context.Context, regions []string, job retentionJob) ([]rotation.ScopeReport, error) {
	perRegion, err := eachRegion(regions, "retention", func(region string) ([]rotation.ScopeReport, error) {
		return r.region(ctx, region, job)
	})
	all := slices.Concat(perRegion...)
	if err != nil {
		return all, err
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].InstanceID != all[j].InstanceID {
			return all[i].InstanceID < all[j].InstanceID
		}
		return all[i].Region < all[j].Region
	})
	return all, nil
}

// eachRegion runs fn for every region at once and returns its results in
// the order of regions. The errors, each prefixed with what and its
// region, are returned together once every region finished.
func eachRegion[T any](regions []string, what string, fn func(region string) (T, error)) ([]T, error) {
	results := make([]T, len(regions))
	errs := make([]error, len(regions))
	var wg sync.WaitGroup
	for i, region := range regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = fn(region)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s in %s: %w", what, region, errs[i])
			}
		}()
	}
	wg.Wait()
	errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	if len(errs) > 0 {
		// The first error decides the classification; the others ride along
		// in the message.
		return results, joinFirst(errs)
	}
	return results, nil
}

// joinFirst keeps errs[0] unwrappable (so Classify sees its AWS code) and
// appends the others' messages.
func joinFirst(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, 0, len(errs)-1)
	for _, e := range errs[1:] {
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("%w; %s", errs[0], strings.Join(msgs, "; "))
}

// region lists, plans and prunes one region.
func (r *Retention) region(ctx context.Context, region string, job retentionJob) ([]rotation.ScopeReport, error) {
	cl := r.ec2(region)
	images, err := r.listImages(ctx, cl, region, job)
	if err != nil {
		return nil, err
	}
	in := rotation.PlanInput{
		Policy: job.policy,
		Now:    job.now,
		Images: images,
		Scope:  job.scope,
		Hold:   job.hold,
	}
	if in.Scope == nil {
		in.Scope = map[string]bool{}
		for _, im := range images {
			if id := im.Tags[rotation.TagInstanceID]; id != "" && !job.exclude[id] {
				in.Scope[id] = true
			}
		}
	}
	var synthetic map[string]bool
	in.Images, synthetic = withPlanned(in.Images, region, job)
	decisions, err := r.plan(ctx, region, in)
	if err != nil {
		return nil, err
	}
	outcomes := r.execute(ctx, cl, job.policy.DryRun, decisions)
	reports := map[string]*rotation.ScopeReport{}
	for i, d := range decisions {
		if synthetic[d.ImageID] || job.exclude[d.InstanceID] {
			continue
		}
		rep := reports[d.InstanceID]
		if rep == nil {
			rep = &rotation.ScopeReport{InstanceID: d.InstanceID, Region: region}
			reports[d.InstanceID] = rep
		}
		o := outcomes[i]
		switch {
		case !d.Delete:
			setReason(&rep.Kept, d.ImageID, d.Reason)
		case o.deferred:
			setReason(&rep.Kept, d.ImageID, reasonDeferred)
		case o.err != nil:
			setReason(&rep.Failed, d.ImageID, o.err.Error())
		default:
			rep.Deleted = append(rep.Deleted, d.ImageID)
			rep.SnapshotsDeleted += o.snapshotsDeleted
		}
		for snap, why := range o.snapshotsKept {
			setReason(&rep.SnapshotsKept, snap, why)
		}
		for snap, why := range o.snapshotsFailed {
			setReason(&rep.SnapshotsFailed, snap, why)
		}
	}
	out := make([]rotation.ScopeReport, 0, len(reports))
	for _, rep := range reports {
		slices.Sort(rep.Deleted)
		out = append(out, *rep)
	}
	return out, nil
}

func setReason(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}

// plannedPrefix marks the stand-ins for images a dry run did not make.
const plannedPrefix = "planned:"

// withPlanned adds, in a dry run, a stand-in for each image this rotation
// would have made in region, so the plan counts it as the newest image the
// way a real run does (otherwise a dry run would report one deletion too
// few per scope). The stand-ins never reach the report.
func withPlanned(images []rotation.Image, region string, job retentionJob) ([]rotation.Image, map[string]bool) {
	if len(job.planned) == 0 {
		return images, nil
	}
	synthetic := map[string]bool{}
	for _, rec := range job.planned {
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
		}
		images = append(images, rotation.Image{
			ID:        id,
			Region:    region,
			Name:      rec.Name,
			State:     rotation.StateAvailable,
			CreatedAt: job.now,
			Tags:      tags,
		})
		synthetic[id] = true
	}
	return images, synthetic
}

// plan runs the planner until every image it wants to delete has had its
// references read: first without references (cheap: most images are kept,
// and only delete candidates need the reference calls), then with the
// references of the candidates. If a plan with references proposes an image
// whose references were not read, those are read and the plan is made
// again; after planRounds, anything still unread is kept.
func (r *Retention) plan(ctx context.Context, region string, in rotation.PlanInput) ([]rotation.Decision, error) {
	checked := map[string]bool{}
	in.References = map[string][]string{}
	decisions := rotation.PlanRetention(in)
	for range planRounds {
		var fresh []string
		for _, d := range decisions {
			if d.Delete && !checked[d.ImageID] && !strings.HasPrefix(d.ImageID, plannedPrefix) {
				fresh = append(fresh, d.ImageID)
			}
		}
		if len(fresh) == 0 {
			break
		}
		refs, err := r.references(ctx, region, fresh)
		if err != nil {
			return nil, err
		}
		for _, id := range fresh {
			checked[id] = true
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
	}
	return decisions, nil
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
		groups = ec2x.Chunks(job.instanceIDs, filterChunk)
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
				out = append(out, img)
			}
		}
	}
	return out, nil
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
	// An unreadable date stays zero: the planner then dates the image by
	// its rotation tag, or keeps it as of unknown age.
	if created, err := time.Parse(time.RFC3339Nano, aws.ToString(im.CreationDate)); err == nil {
		img.CreatedAt = created
	}
	// "disabled" is the only value that allows deregistration; "enabled",
	// "enabled-with-cooldown" and "disabled-until <time>" all still protect.
	if p := aws.ToString(im.DeregistrationProtection); p != "" && p != "disabled" {
		img.DeregistrationProtected = true
	}
	return img
}

// outcome is what carrying out one decision did.
type outcome struct {
	deferred         bool // not attempted: the invocation's time is nearly up
	err              error
	snapshotsDeleted int
	snapshotsKept    map[string]string // snapshot → why it stays
	snapshotsFailed  map[string]string // snapshot → error
}

// execute carries out the delete decisions (none in a dry run) with a few
// workers; outcomes[i] belongs to decisions[i].
func (r *Retention) execute(ctx context.Context, cl ec2x.RetentionEC2, dryRun bool, decisions []rotation.Decision) []outcome {
	outcomes := make([]outcome, len(decisions))
	if dryRun {
		return outcomes
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range deleteWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < deleteReserve {
					outcomes[i].deferred = true
					continue
				}
				outcomes[i] = deleteImage(ctx, cl, decisions[i])
			}
		}()
	}
	for i, d := range decisions {
		if d.Delete {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	return outcomes
}

// deleteImage deregisters one image and makes sure its snapshots go with
// it. The snapshot ids come from the plan (read before deregistering):
// those no other listed image uses. DeleteAssociatedSnapshots deletes them in
// the same call; any it does not report as deleted is deleted explicitly,
// unless EC2 says another image still uses it. NotFound (image or snapshot)
// means an earlier attempt already did it.
func deleteImage(ctx context.Context, cl ec2x.RetentionEC2, d rotation.Decision) outcome {
	var o outcome
	out, err := cl.DeregisterImage(ctx, &ec2.DeregisterImageInput{
		ImageId:                   aws.String(d.ImageID),
		DeleteAssociatedSnapshots: aws.Bool(true),
	})
	switch {
	case err == nil:
	case ec2x.IsNotFound(err):
		out = nil
	default:
		o.err = fmt.Errorf("deregistering %s: %w", d.ImageID, err)
		return o
	}
	deleted := map[string]bool{}
	if out != nil {
		for _, rc := range out.DeleteSnapshotResults {
			if rc.ReturnCode == types.SnapshotReturnCodesSuccess {
				deleted[aws.ToString(rc.SnapshotId)] = true
			}
		}
	}
	for _, snap := range d.SnapshotIDs {
		if deleted[snap] {
			o.snapshotsDeleted++
			continue
		}
		_, err := cl.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
		switch {
		case err == nil:
			o.snapshotsDeleted++
		case ec2x.IsNotFound(err):
		case ec2x.Code(err) == "InvalidSnapshot.InUse":
			setReason(&o.snapshotsKept, snap, "still used by another image: "+apiMessage(err))
		default:
			setReason(&o.snapshotsFailed, snap, fmt.Sprintf("deleting snapshot of %s: %v", d.ImageID, err))
		}
	}
	return o
}

// apiMessage is the AWS error message of err (its text when it has none).
func apiMessage(err error) string {
	var ae interface{ ErrorMessage() string }
	if errors.As(err, &ae) && ae.ErrorMessage() != "" {
		return ae.ErrorMessage()
	}
	return err.Error()
}
