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
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Snapshot makes the source image of each instance of a batch in the home
// region (CreateImage), or adopts the one an earlier attempt of the same
// rotation made: the AMI name is deterministic, so a retried or duplicated
// invocation finds it (InvalidAMIName.Duplicate) instead of making a second.
type Snapshot struct {
	EC2 ec2x.Regional[ec2x.SnapshotEC2]
	// KMS tells the AWS managed key from customer managed ones (the
	// encryption pre-flight of policies that share).
	KMS ec2x.Regional[ec2x.SnapshotKMS]
	Env
}

// Handle answers the batch with one record per instance: pending (or
// available, when adopted), refused with the reason, or error.
func (s *Snapshot) Handle(ctx context.Context, in Batch) (Batch, error) {
	return classified(s.handle(ctx, in))
}

// instanceStates an image can be made from.
var imageableStates = []string{string(types.InstanceStateNameRunning), string(types.InstanceStateNameStopped)}

func (s *Snapshot) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, s.EC2, s.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = s.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	p := bc.policy
	client := s.EC2.In(bc.home)
	b.Images = slices.Clone(b.Images) // never write into the caller's records

	instances, err := describeInstances(ctx, client, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{ec2x.Filter("instance-id", b.InstanceIDs...)},
	})
	if err != nil {
		return Batch{}, fmt.Errorf("describing the batch's instances in %s: %w", bc.home, err)
	}
	// A rotation older than an instance's newest image (a backdated run, a
	// late retry or redrive) makes nothing for it: its image would be
	// older than what consumers already run.
	newest, err := newestImages(ctx, client, bc.home, p.Name, b.InstanceIDs)
	if err != nil {
		return Batch{}, err
	}

	unshareable, err := s.unshareable(ctx, bc.home, client, p, instances)
	if err != nil {
		return Batch{}, err
	}

	records := make([]rotation.Record, len(b.InstanceIDs))
	var (
		mu        sync.Mutex
		retryable error
		late      = map[string]string{} // instance → why its pre script's quiesce ran out first
	)
	g := workers()
	for i, id := range b.InstanceIDs {
		g.Go(func() error {
			r := rotation.Record{InstanceID: id, Region: bc.home, Name: rotation.ImageName(p.Name, id, b.Rotation.ID)}
			// The pre script's quiesce must still hold when this
			// instance's CreateImage is called, not the batch's first.
			var preWhy string
			if p.Scripts != nil && !p.DryRun {
				var expired bool
				if preWhy, expired = preFailed(b.Scripts, p, id, s.now()); expired {
					mu.Lock()
					late[id] = preWhy
					mu.Unlock()
				}
			}
			inst, ok := instances[id]
			switch why := refusal(inst, ok, p); {
			case why != "":
				r.State, r.Error = rotation.StateRefused, why
			case unshareable[id] != "":
				r.State, r.Error = rotation.StateRefused, unshareable[id]
			case newest[id].Tags[rotation.TagRotation] > b.Rotation.ID && !b.Rotation.Backfill:
				r.State, r.Error = rotation.StateRefused, fmt.Sprintf("instance already has an image of a later rotation (%s, %s); "+
					"a rotation never goes back in time: start it with a later time, or as a manual backfill", newest[id].Tags[rotation.TagRotation], newest[id].ID)
			case p.DryRun:
				r.State = rotation.StatePlanned
			case preWhy != "" && p.Scripts.OnPreFailure == rotation.OnPreFailureSkip:
				// An earlier attempt of this step may have made the image
				// while the quiesce held (a retried Snapshot): it is adopted,
				// not refused.
				img, found, err := imageByName(ctx, client, r.Name)
				switch {
				case err != nil:
					mu.Lock()
					retryable = ec2x.RetryableError{Code: "ImageLookup", Message: err.Error()}
					mu.Unlock()
					r.State, r.Error = rotation.StateError, errText(err)
				case found && ec2x.TagMap(img.Tags)[rotation.TagInstanceID] == id:
					r.ImageID, r.State, r.SnapshotIDs = aws.ToString(img.ImageId), rotation.StatePending, ec2x.SnapshotIDs(img)
					mu.Lock()
					delete(late, id)
					mu.Unlock()
				default:
					r.State, r.Error = rotation.StateRefused, preWhy+" (scripts.onPreFailure: skip, so no image this rotation)"
				}
			default:
				tags := rotation.ImageTags(p, b.Rotation, id, ec2x.TagMap(inst.Tags))
				if p.Scripts != nil {
					tags[rotation.TagConsistency] = rotation.ConsistencyApplication
					if preWhy != "" {
						tags[rotation.TagConsistency] = rotation.ConsistencyCrash
					}
				}
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
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}
	if retryable != nil {
		// The images made so far are found again by name on the retry.
		return Batch{}, retryable
	}

	// A pre script that succeeded but whose quiesce ran out before
	// CreateImage is recorded as such: the report tells the instance's
	// image crash-consistent (or refused) from the script state.
	if len(late) > 0 {
		b.Scripts = cloneScripts(b.Scripts)
		for i := range b.Scripts.Instances {
			in := &b.Scripts.Instances[i]
			if why, ok := late[in.InstanceID]; ok {
				in.Pre.Status, in.Pre.Reason = ScriptTimedOut, why
			}
		}
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
	create := func() (string, error) {
		out, err := client.CreateImage(ctx, &ec2.CreateImageInput{
			InstanceId:        aws.String(r.InstanceID),
			Name:              aws.String(r.Name),
			Description:       aws.String(rotation.Description(p.Name, r.InstanceID, rot.ID)),
			NoReboot:          aws.Bool(!p.Reboots()),
			TagSpecifications: ec2x.TagSpecs(tags, types.ResourceTypeImage, types.ResourceTypeSnapshot),
		})
		if err != nil {
			audit(ctx, "CreateImage", r.Region, []string{r.InstanceID}, "new image "+r.Name, err)
			return "", fmt.Errorf("creating image %s of %s: %w", r.Name, r.InstanceID, err)
		}
		audit(ctx, "CreateImage", r.Region, []string{r.InstanceID, aws.ToString(out.ImageId)}, "new image "+r.Name, nil)
		return aws.ToString(out.ImageId), nil
	}
	ours := func(img types.Image) error {
		if ec2x.TagMap(img.Tags)[rotation.TagInstanceID] != r.InstanceID {
			return fmt.Errorf("image name %s is taken by %s, which is not amirotate's image of %s", r.Name, aws.ToString(img.ImageId), r.InstanceID)
		}
		return nil
	}
	id, adopted, err := createOrAdopt(ctx, client, r.Region, r.Name, create, ours)
	if err != nil {
		return err
	}
	r.ImageID, r.State = id, rotation.StatePending
	if adopted != nil {
		// poll reads its state again; a failed one is cleaned up there.
		r.SnapshotIDs = ec2x.SnapshotIDs(*adopted)
	}
	return nil
}

// unshareable returns, for a policy that shares, why each instance whose
// volumes are encrypted with the AWS managed key aws/ebs is not imaged:
// another account can never be given use of that key, so the shared image
// could not be launched by anyone it is shared with
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html).
// It runs before anything is made. A key whose kind cannot be read refuses
// the instance too: sharing must not depend on a guess.
func (s *Snapshot) unshareable(ctx context.Context, region string, client ec2x.SnapshotEC2, p rotation.Policy, instances map[string]types.Instance) (map[string]string, error) {
	if p.Shares().Empty() || len(instances) == 0 {
		return nil, nil
	}
	ids := slices.Sorted(maps.Keys(instances))
	why := map[string]string{}
	var bare []string // copy regions without a key of their own
	for _, c := range p.CopyTo {
		if c.KMSKeyID == "" {
			bare = append(bare, c.Region)
		}
	}
	managers := map[string]string{} // key → its KeyManager, or the error reading it
	for chunk := range slices.Chunk(ids, filterChunk) {
		pg := ec2.NewDescribeVolumesPaginator(client, &ec2.DescribeVolumesInput{
			Filters: []types.Filter{ec2x.Filter("attachment.instance-id", chunk...)},
		})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading the encryption of the batch's volumes in %s: %w", region, err)
			}
			for _, v := range page.Volumes {
				if !aws.ToBool(v.Encrypted) {
					continue
				}
				key, vol := aws.ToString(v.KmsKeyId), aws.ToString(v.VolumeId)
				m, ok := managers[key]
				if !ok {
					out, err := s.KMS.In(region).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(key)})
					switch {
					case err != nil:
						m = "unknown: " + err.Error()
					case out.KeyMetadata == nil:
						m = "unknown: DescribeKey returned no key"
					default:
						m = string(out.KeyMetadata.KeyManager)
					}
					managers[key] = m
				}
				// A Multi-Attach volume is attached to several instances:
				// each of the batch's is judged by it.
				for _, att := range v.Attachments {
					inst := aws.ToString(att.InstanceId)
					if _, ours := instances[inst]; !ours || why[inst] != "" {
						continue
					}
					switch {
					case m == string(kmstypes.KeyManagerTypeAws):
						why[inst] = fmt.Sprintf("volume %s is encrypted with the AWS managed key aws/ebs (%s), which other accounts cannot use: "+
							"the accounts, organizations and OUs in shareWith could not launch its images, so none is made. "+
							"Encrypt the instance's volumes with a customer managed key whose key policy lets them use it, "+
							"and set copyTo[].kmsKeyId to such a key in each copy region", vol, key)
					case m != string(kmstypes.KeyManagerTypeCustomer):
						why[inst] = fmt.Sprintf("volume %s is encrypted with KMS key %s, and whether other accounts can use that key could not be read (%s); "+
							"the policy shares its images, so none is made. Allow the snapshot function kms:DescribeKey on the key", vol, key, strings.TrimPrefix(m, "unknown: "))
					case len(bare) > 0:
						// CopyImage re-encrypts a copy without KmsKeyId with the
						// destination's default EBS key: aws/ebs unless the
						// account changed it, which other accounts cannot use.
						why[inst] = fmt.Sprintf("volume %s is encrypted, and copyTo names no kmsKeyId for %s: the copies there would be encrypted with "+
							"that region's default EBS key (aws/ebs unless changed), which the accounts, organizations and OUs in shareWith could not use, "+
							"so none is made. Set copyTo[].kmsKeyId to a customer managed key of each copy region", vol, strings.Join(bare, ", "))
					}
				}
			}
		}
	}
	return why, nil
}

// preFailed is why an instance's pre script does not make its image
// application-consistent ("" = it does): it did not succeed, or (expired)
// its time ran out before now, CreateImage's time (the fsfreeze preset's
// watchdog thaws then).
func preFailed(st *ScriptsState, p rotation.Policy, id string, now time.Time) (why string, expired bool) {
	in, _ := st.Instance(id)
	if why := in.PreFailed(); why != "" {
		return why, false
	}
	if limit := in.Pre.Sent.Add(p.Scripts.PreTimeout()); !in.Pre.Sent.IsZero() && now.After(limit) {
		return fmt.Sprintf("pre script's time ran out before CreateImage (sent %s, timeout %s): the instance may be thawed already",
			in.Pre.Sent.UTC().Format(time.RFC3339), p.Scripts.PreTimeout()), true
	}
	return "", false
}
