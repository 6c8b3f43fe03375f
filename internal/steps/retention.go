package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

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
	// planRounds bounds the plan → read → plan loop (see plan): launch
	// permissions, then usage reports, then references may each be needed.
	planRounds = 4
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
	EC2         ec2x.Regional[ec2x.RetentionEC2]
	AutoScaling ec2x.Regional[ec2x.RetentionAutoScaling]
	// Env's clock checks the rotation time and measures the orphan sweep's
	// snapshot ages; retention ages count from the rotation time.
	Env
	// pageSize overrides MaxResults of every paginated listing (0 = each
	// API's largest page); tests lower it to prove pagination.
	pageSize int32
}

// Handle prunes the images of the batch's instances. Only instances whose
// new image (source and every copy) is available this rotation are in
// scope; an instance whose new image failed, timed out or errored is held:
// none of its images go. It fills b.Retention.
func (r *Retention) Handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, r.EC2, r.Env)
	if err != nil {
		return b, ec2x.Classify(err)
	}
	ctx = r.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	home := bc.home
	b.Policy = bc.policy
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
	bc, err := checkRotation(in.Policy, in.Rotation, r.EC2, r.Env)
	if err != nil {
		return out, ec2x.Classify(err)
	}
	ctx = r.auditing(ctx, bc.policy.Name, in.Rotation.ID)
	home := bc.home
	in.Policy = bc.policy
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
		if !deletedAny(reports) {
			return out, ec2x.Classify(err)
		}
		// What the pass deleted is reported; the rotation fails on the error.
		e := ec2x.Classify(err)
		out.Error = &StepError{Error: errorName(e), Cause: e.Error()}
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

// run plans every region, then prunes them. Nothing is deleted anywhere
// unless every region's images and references were read and the plan
// passes the circuit breaker: a region that fails halfway can never leave
// deletions unreported. Errors of single deletions are reported per image.
func (r *Retention) run(ctx context.Context, regions []string, job retentionJob) ([]rotation.ScopeReport, error) {
	plans, err := eachRegion(regions, "retention", func(region string) (regionPlan, error) {
		return r.planRegion(ctx, region, job)
	})
	if err != nil {
		return nil, err
	}
	if err := circuitBreaker(job.policy, plans); err != nil {
		return nil, err
	}
	perRegion, _ := eachRegion(regions, "retention", func(region string) ([]rotation.ScopeReport, error) {
		return r.prune(ctx, plans[slices.Index(regions, region)], job), nil
	})
	all := slices.Concat(perRegion...)
	sort.Slice(all, func(i, j int) bool {
		if all[i].InstanceID != all[j].InstanceID {
			return all[i].InstanceID < all[j].InstanceID
		}
		return all[i].Region < all[j].Region
	})
	return all, nil
}

// circuitBreaker stops a retention pass, before any deletion, that would
// delete more images of one instance in one region than the policy allows
// (maxDeletionsPerInstance): forged or mistaken input, a lowered keep, or a
// bug must not prune a fleet in one night. It checks the plans of every region before any deletion.
func circuitBreaker(p rotation.Policy, plans []regionPlan) error {
	for _, rp := range plans {
		count := map[string]int{}
		for _, d := range rp.decisions {
			if d.Delete && !rp.synthetic[d.ImageID] {
				count[d.InstanceID]++
			}
		}
		for _, inst := range slices.Sorted(maps.Keys(count)) {
			if n := count[inst]; n > p.MaxDeletionsPerInstance {
				return ec2x.FatalError{Code: "CircuitBreaker", Message: fmt.Sprintf(
					"circuit breaker: retention would delete %d images of %s in %s, more than maxDeletionsPerInstance (%d); "+
						"nothing was deleted. If that many should go (keep was lowered), raise maxDeletionsPerInstance for one run",
					n, inst, rp.region, p.MaxDeletionsPerInstance)}
			}
		}
	}
	return nil
}

// eachRegion runs fn for every region at once and returns its results in
// the order of regions. The errors, each prefixed with what and its
// region, are returned together once every region finished.
func eachRegion[T any](regions []string, what string, fn func(region string) (T, error)) ([]T, error) {
	results := make([]T, len(regions))
	errs := make([]error, len(regions))
	var g errgroup.Group
	for i, region := range regions {
		g.Go(func() error {
			results[i], errs[i] = fn(region)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s in %s: %w", what, region, errs[i])
			}
			return nil
		})
	}
	g.Wait()
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

// regionPlan is one region's decisions, before anything is deleted.
type regionPlan struct {
	region    string
	decisions []rotation.Decision
	// synthetic are a dry run's stand-ins for the images it did not make.
	synthetic map[string]bool
	// images are the images listed (stand-ins excluded), for the inventory.
	images []rotation.Image
}

// planRegion lists and plans one region.
func (r *Retention) planRegion(ctx context.Context, region string, job retentionJob) (regionPlan, error) {
	cl := r.EC2.In(region)
	images, err := r.listImages(ctx, cl, region, job)
	if err != nil {
		return regionPlan{}, err
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
	rp := regionPlan{region: region, images: images}
	in.Images, rp.synthetic = withPlanned(in.Images, region, job)
	var moved func(instanceID string) []string
	if job.moved != nil {
		moved = func(instanceID string) []string { return job.moved(region, instanceID) }
	}
	rp.decisions, err = r.plan(ctx, region, in, moved)
	return rp, err
}

// prune carries out one region's plan and reports it per instance.
func (r *Retention) prune(ctx context.Context, rp regionPlan, job retentionJob) []rotation.ScopeReport {
	region, decisions := rp.region, rp.decisions
	outcomes := r.execute(ctx, r.EC2.In(region), job, rp, decisions)
	listed := map[string]rotation.Image{}
	for _, img := range rp.images {
		listed[img.ID] = img
	}
	reports := map[string]*rotation.ScopeReport{}
	for i, d := range decisions {
		if rp.synthetic[d.ImageID] || job.exclude[d.InstanceID] {
			continue
		}
		rep := reports[d.InstanceID]
		if rep == nil {
			rep = &rotation.ScopeReport{InstanceID: d.InstanceID, Region: region}
			reports[d.InstanceID] = rep
		}
		o := outcomes[i]
		switch {
		case !d.Delete && o.retireErr != "":
			// Kept, and what retiring it needed failed: counted as a
			// failure, so the rotation says so.
			setReason(&rep.Failed, d.ImageID, d.Reason+"; but "+o.retireErr)
		case !d.Delete:
			setReason(&rep.Kept, d.ImageID, d.Reason)
		case o.deferred:
			setReason(&rep.Kept, d.ImageID, reasonDeferred)
		case o.err != nil:
			setReason(&rep.Failed, d.ImageID, o.err.Error())
		default:
			rep.Deleted = append(rep.Deleted, d.ImageID)
			rep.SnapshotsDeleted += len(o.deleted)
			// Snapshots another image still uses stay, and so does their
			// storage.
			if img := listed[d.ImageID]; len(o.deleted) == len(img.SnapshotIDs) {
				rep.GiBFreed += img.SizeGiB
			}
		}
		for snap, why := range o.inUse {
			setReason(&rep.SnapshotsKept, snap, why)
		}
		for snap, why := range o.failed {
			setReason(&rep.SnapshotsFailed, snap, fmt.Sprintf("deleting snapshot of %s: %s", d.ImageID, why))
		}
	}
	out := make([]rotation.ScopeReport, 0, len(reports))
	for _, rep := range reports {
		slices.Sort(rep.Deleted)
		out = append(out, *rep)
	}
	return out
}

// outcome is what carrying out one decision did.
type outcome struct {
	deferred  bool   // not attempted: the invocation's time is nearly up
	retireErr string // what failed retiring a kept image
	deletion
}

// execute carries out the delete decisions (none in a dry run) with a few
// deletions in flight; outcomes[i] belongs to decisions[i].
func (r *Retention) execute(ctx context.Context, cl ec2x.RetentionEC2, job retentionJob, rp regionPlan, decisions []rotation.Decision) []outcome {
	outcomes := make([]outcome, len(decisions))
	if job.policy.DryRun {
		return outcomes
	}
	snapshots := map[string][]string{}
	for _, img := range rp.images {
		snapshots[img.ID] = img.SnapshotIDs
	}
	var g errgroup.Group
	g.SetLimit(deleteWorkers)
	for i, d := range decisions {
		if !d.Delete && (len(d.Unshare) > 0 || !d.DeprecateAt.IsZero() || d.RequestUsageReport) &&
			!rp.synthetic[d.ImageID] && !job.exclude[d.InstanceID] {
			g.Go(func() error {
				outcomes[i].retireErr = r.retireImage(ctx, cl, d.Region, rotation.RotationID(job.now), d, snapshots[d.ImageID], job.policy.Name)
				return nil
			})
			continue
		}
		if !d.Delete {
			continue
		}
		g.Go(func() error {
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < deleteReserve {
				outcomes[i].deferred = true
				return nil
			}
			outcomes[i].deletion = deleteImage(ctx, cl, d.Region, d.ImageID, d.SnapshotIDs, "retention: "+d.Reason)
			return nil
		})
	}
	g.Wait()
	return outcomes
}

// deletedAny reports whether a pass deleted any image.
func deletedAny(reports []rotation.ScopeReport) bool {
	return slices.ContainsFunc(reports, func(r rotation.ScopeReport) bool { return len(r.Deleted) > 0 })
}

// errorName is the name Step Functions gives a classified error (its Go
// type name, as aws-lambda-go reports it).
func errorName(err error) string {
	t := reflect.TypeOf(err)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
