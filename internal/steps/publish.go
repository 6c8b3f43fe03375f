package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"golang.org/x/sync/errgroup"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// ssmChunk is GetParameters' limit on names per call.
const ssmChunk = 10

// Publish points consumers at the new images: the policy's SSM parameter of
// each instance and region, and every launch template tagged
// amirotate:track=<instance-id> in that region. It changes only what
// differs, so a second run changes nothing.
type Publish struct {
	EC2 ec2x.Regional[ec2x.PublishEC2]
	SSM ec2x.Regional[ec2x.PublishSSM]
	Env
	// pageSize overrides MaxResults of DescribeLaunchTemplates (0 = 200,
	// the API's largest page); tests lower it to prove pagination.
	pageSize int32
}

// Handle publishes every new available image of the batch (in a dry run:
// every planned one, reporting what would change) and fills b.Published.
// Failures of one instance or region are reported in its Publication;
// retention, which runs next, then still sees the old image in use.
func (p *Publish) Handle(ctx context.Context, b Batch) (Batch, error) {
	return classified(p.handle(ctx, b))
}

func (p *Publish) handle(ctx context.Context, b Batch) (Batch, error) {
	bc, err := checkBatch(b, p.EC2, p.Env)
	if err != nil {
		return Batch{}, err
	}
	ctx = p.auditing(ctx, bc.policy.Name, b.Rotation.ID)
	pol := bc.policy
	b.Policy = pol
	b.Rotation.Home = bc.home
	if (pol.Publish.SSMParameter == "" && !pol.Publish.LaunchTemplates) || b.Rotation.Backfill {
		// A backfill's images are older than what consumers run: never
		// published.
		return b, nil
	}
	byRegion := map[string][]*Publication{}
	seen := map[string]bool{}
	for _, rec := range b.Images {
		ok := rec.State == rotation.StateAvailable && rec.ImageID != ""
		if pol.DryRun && rec.State == rotation.StatePlanned {
			ok = true
		}
		key := rec.InstanceID + "\x00" + rec.Region
		if !ok || seen[key] {
			continue
		}
		seen[key] = true
		pub := &Publication{InstanceID: rec.InstanceID, Region: rec.Region, ImageID: rec.ImageID}
		pub.SSMParameter = rotation.SSMParameterName(pol, rec.InstanceID, rec.Region)
		byRegion[rec.Region] = append(byRegion[rec.Region], pub)
	}
	regions := slices.Sorted(maps.Keys(byRegion))
	mv := move{
		policy:      pol,
		rotationID:  b.Rotation.ID,
		tokenKey:    b.Rotation.ID,
		why:         "publish the newest image of %s",
		description: fmt.Sprintf("amirotate %s %s", pol.Name, b.Rotation.ID),
	}
	var g errgroup.Group
	for _, region := range regions {
		g.Go(func() error {
			pubs := byRegion[region]
			if !pol.DryRun {
				pubs = p.provenNew(ctx, region, b, pubs)
			}
			p.point(ctx, region, mv, pubs)
			return nil
		})
	}
	g.Wait()
	var out []Publication
	for _, region := range regions {
		for _, pub := range byRegion[region] {
			out = append(out, *pub)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].InstanceID != out[j].InstanceID {
			return out[i].InstanceID < out[j].InstanceID
		}
		return out[i].Region < out[j].Region
	})
	b.Published = out
	return b, nil
}

// move is what a publication points consumers at and what it may replace:
// publish moves forward to a rotation's new images, a rollback back to an
// earlier image of the same lineage.
type move struct {
	policy rotation.Policy
	// rotationID is the rotation of the images moved to. Publish never
	// replaces an image of a later rotation; backwards (a rollback) does.
	rotationID string
	backwards  bool
	// tokenKey goes into launch template versions' idempotency tokens.
	tokenKey string
	// why is the audit reason, with %s for the instance; description the
	// launch template versions' description.
	why, description string
}

// point moves each publication's SSM parameter and tracked launch templates
// in region to its image, as the policy publishes.
func (p *Publish) point(ctx context.Context, region string, mv move, pubs []*Publication) {
	if mv.policy.Publish.SSMParameter != "" {
		p.publishSSM(ctx, region, mv, pubs)
	}
	if mv.policy.Publish.LaunchTemplates {
		p.publishLaunchTemplates(ctx, region, mv, pubs)
	}
}

// provenNew returns the publications whose new image is provably this
// rotation's image of its instance; the others get an error and publish
// nothing (a hand-made input must not point consumers at a foreign image).
// An image marked rolled back is never published again.
func (p *Publish) provenNew(ctx context.Context, region string, b Batch, pubs []*Publication) []*Publication {
	ids := make([]string, len(pubs))
	for i, pub := range pubs {
		ids[i] = pub.ImageID
	}
	found, err := describeImagesByID(ctx, p.EC2.In(region), ids)
	var ok []*Publication
	for _, pub := range pubs {
		switch img, seen := found[pub.ImageID]; {
		case err != nil:
			addError(pub, fmt.Errorf("reading the new image: %w", err))
		case !seen || !rotationImage(img, b.Policy, b.Rotation, pub.InstanceID):
			addError(pub, fmt.Errorf("image %s is not provably this rotation's image of %s; nothing published", pub.ImageID, pub.InstanceID))
		case rotation.RolledBack(ec2x.TagMap(img.Tags)):
			addError(pub, errRolledBack(pub.ImageID, ec2x.TagMap(img.Tags)))
		default:
			ok = append(ok, pub)
		}
	}
	return ok
}

// errRolledBack is why an image marked rolled back is not published or
// marked latest.
func errRolledBack(imageID string, tags map[string]string) error {
	return fmt.Errorf("image %s is marked %s=%s (rolled back from): it is never published or marked latest again while the mark stands; "+
		"amirotate rollback --clear lifts the mark", imageID, rotation.TagRolledBack, tags[rotation.TagRolledBack])
}

// sameLineage says why current, the image a parameter or launch template
// launches now, may not be replaced by pub's image, or "" when it may:
// it must be provably one of the same instance's images of this policy,
// and (unless the move goes backwards) of an earlier rotation. A tag on a
// template, or a parameter someone else wrote, is not enough to hand it
// over to amirotate.
func sameLineage(current types.Image, found bool, mv move, pub *Publication) string {
	pol := mv.policy
	if !found {
		return "it launches an image that is gone or not this account's"
	}
	img := toImage(current, pub.Region)
	if why := rotation.Unproven(img, pol.Name); why != "" {
		return fmt.Sprintf("it launches %s, which is not one of amirotate's images of %s (%s)", img.ID, pub.InstanceID, why)
	}
	if inst := img.Tags[rotation.TagInstanceID]; inst != pub.InstanceID {
		return fmt.Sprintf("it launches %s, an image of %s, not of %s", img.ID, inst, pub.InstanceID)
	}
	if r := img.Tags[rotation.TagRotation]; r > mv.rotationID && !mv.backwards {
		return fmt.Sprintf("it launches %s of a later rotation (%s); never moved backwards", img.ID, r)
	}
	return ""
}

func addError(pub *Publication, err error) {
	if pub.Error == "" {
		pub.Error = err.Error()
	} else {
		pub.Error += "; " + err.Error()
	}
}

// publishSSM reads the current values (10 names per call) and writes only
// the parameters that do not hold their new image yet.
func (p *Publish) publishSSM(ctx context.Context, region string, mv move, pubs []*Publication) {
	dryRun := mv.policy.DryRun
	cl := p.SSM.In(region)
	// Two instances rendering the same name would overwrite each other.
	byName := map[string][]*Publication{}
	for _, pub := range pubs {
		byName[pub.SSMParameter] = append(byName[pub.SSMParameter], pub)
	}
	var names []string
	for name, ps := range byName {
		if len(ps) > 1 {
			for _, pub := range ps {
				addError(pub, fmt.Errorf("SSM parameter %s is shared by %d instances; put {instanceId} in publish.ssmParameter", name, len(ps)))
			}
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	type current struct {
		value   string
		version int64
	}
	have := map[string]current{}
	for c := range slices.Chunk(names, ssmChunk) {
		out, err := cl.GetParameters(ctx, &ssm.GetParametersInput{Names: c})
		if err != nil {
			for _, name := range c {
				addError(byName[name][0], fmt.Errorf("reading SSM parameter %s: %w", name, err))
			}
			continue
		}
		for _, prm := range out.Parameters {
			have[aws.ToString(prm.Name)] = current{value: aws.ToString(prm.Value), version: prm.Version}
		}
		// out.InvalidParameters are the names that do not exist yet.
	}
	// The images the existing parameters hold now, to check their lineage.
	var currentIDs []string
	for _, cur := range have {
		currentIDs = append(currentIDs, cur.value)
	}
	currentImages, err := describeImagesByID(ctx, p.EC2.In(region), currentIDs)
	var written []*Publication
	for _, name := range names {
		pub := byName[name][0]
		if pub.Error != "" {
			continue
		}
		cur, exists := have[name]
		if exists && cur.value == pub.ImageID && pub.ImageID != "" {
			pub.SSMVersion = cur.version
			continue
		}
		if exists {
			img, found := currentImages[cur.value]
			why := ""
			if err != nil {
				why = fmt.Sprintf("its current image could not be read: %v", err)
			} else {
				why = sameLineage(img, found, mv, pub)
			}
			if why != "" {
				addError(pub, fmt.Errorf("SSM parameter %s left as it is: %s", name, why))
				continue
			}
		}
		pub.Changed = true
		if dryRun {
			continue
		}
		out, err := cl.PutParameter(ctx, &ssm.PutParameterInput{
			Name:        aws.String(name),
			Value:       aws.String(pub.ImageID),
			Type:        ssmtypes.ParameterTypeString,
			DataType:    aws.String("aws:ec2:image"),
			Overwrite:   aws.Bool(true),
			Description: aws.String("Newest image of " + pub.InstanceID + ", published by amirotate"),
		})
		audit(ctx, "ssm:PutParameter", region, []string{name, pub.ImageID}, fmt.Sprintf(mv.why, pub.InstanceID), err)
		if err != nil {
			pub.Changed = false
			addError(pub, fmt.Errorf("writing SSM parameter %s: %w", name, err))
			continue
		}
		pub.SSMVersion = out.Version
		written = append(written, pub)
	}
	confirmSSM(ctx, cl, written)
}

// ssmSettle is how long publish waits for Parameter Store to accept
// aws:ec2:image values it checks after PutParameter answered.
var ssmSettle = []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second}

// confirmSSM reads the written parameters back until each holds its image.
// Parameter Store validates an aws:ec2:image value after PutParameter
// succeeded, with the caller's ec2:DescribeImages, and on failure keeps the
// old value without an error; a parameter that never takes its image is
// reported here.
func confirmSSM(ctx context.Context, cl ec2x.PublishSSM, pubs []*Publication) {
	for _, wait := range ssmSettle {
		if len(pubs) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		var pending []*Publication
		for c := range slices.Chunk(pubs, ssmChunk) {
			names := make([]string, len(c))
			for i, pub := range c {
				names[i] = pub.SSMParameter
			}
			out, err := cl.GetParameters(ctx, &ssm.GetParametersInput{Names: names})
			if err != nil {
				for _, pub := range c {
					addError(pub, fmt.Errorf("reading SSM parameter %s back: %w", pub.SSMParameter, err))
				}
				continue
			}
			got := map[string]string{}
			for _, prm := range out.Parameters {
				got[aws.ToString(prm.Name)] = aws.ToString(prm.Value)
			}
			for _, pub := range c {
				if got[pub.SSMParameter] != pub.ImageID {
					pending = append(pending, pub)
				}
			}
		}
		pubs = pending
	}
	for _, pub := range pubs {
		pub.Changed = false
		addError(pub, fmt.Errorf("SSM parameter %s did not take %s: Parameter Store checks aws:ec2:image values after the write, "+
			"and keeps the old value when the image is not available in the region or the function's role lacks ec2:DescribeImages",
			pub.SSMParameter, pub.ImageID))
	}
}

// publishLaunchTemplates finds the region's launch templates tracking the
// batch's instances (one paginated DescribeLaunchTemplates) and makes a
// version with the new image the default of each whose default version
// launches another image.
func (p *Publish) publishLaunchTemplates(ctx context.Context, region string, mv move, pubs []*Publication) {
	cl := p.EC2.In(region)
	byInstance := map[string]*Publication{}
	ids := make([]string, 0, len(pubs))
	for _, pub := range pubs {
		byInstance[pub.InstanceID] = pub
		ids = append(ids, pub.InstanceID)
	}
	sort.Strings(ids)
	type tracked struct {
		id, name string
		pub      *Publication
	}
	var lts []tracked
	found, failed := trackedTemplates(ctx, cl, ids, p.pageSize)
	for id, err := range failed {
		addError(byInstance[id], fmt.Errorf("finding launch templates tracking %s: %w", id, err))
	}
	for _, t := range found {
		lts = append(lts, tracked{id: t.id, name: t.name, pub: byInstance[t.instanceID]})
	}
	sort.Slice(lts, func(i, j int) bool { return lts[i].id < lts[j].id })
	for _, lt := range lts {
		used, changed, err := p.updateTemplate(ctx, cl, mv, lt.id, lt.pub)
		if err != nil {
			addError(lt.pub, fmt.Errorf("launch template %s (%s): %w", lt.id, lt.name, err))
			continue
		}
		if used.ID != "" {
			lt.pub.LaunchTemplates = append(lt.pub.LaunchTemplates, used)
		}
		lt.pub.Changed = lt.pub.Changed || changed
	}
}

// updateTemplate makes image the default of one launch template: a new
// version from the current default with only ImageId changed, then the
// default switched to it. A template whose default already launches image
// is left alone, as is one that takes its image from an SSM parameter
// (resolve:ssm:…): it follows the parameter, not us. Returns the version
// that is (or, in a dry run, would be: 0) the default, and whether anything
// changed.
func (p *Publish) updateTemplate(ctx context.Context, cl ec2x.PublishEC2, mv move, id string, pub *Publication) (LaunchTemplateUsed, bool, error) {
	image := pub.ImageID
	out, err := cl.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: aws.String(id),
		Versions:         []string{"$Default"},
	})
	if err != nil {
		return LaunchTemplateUsed{}, false, fmt.Errorf("reading its default version: %w", err)
	}
	if len(out.LaunchTemplateVersions) == 0 {
		return LaunchTemplateUsed{}, false, fmt.Errorf("it has no default version")
	}
	def := out.LaunchTemplateVersions[0]
	defNumber := aws.ToInt64(def.VersionNumber)
	var current string
	if def.LaunchTemplateData != nil {
		current = aws.ToString(def.LaunchTemplateData.ImageId)
	}
	if strings.HasPrefix(current, "resolve:ssm:") {
		return LaunchTemplateUsed{}, false, nil
	}
	if current == image && image != "" {
		return LaunchTemplateUsed{ID: id, Version: defNumber}, false, nil
	}
	if !slices.Contains(mv.policy.Publish.AdoptLaunchTemplates, id) {
		found, err := describeImagesByID(ctx, cl, []string{current})
		if err != nil {
			return LaunchTemplateUsed{}, false, fmt.Errorf("reading the image it launches: %w", err)
		}
		img, ok := found[current]
		if why := sameLineage(img, ok, mv, pub); why != "" {
			return LaunchTemplateUsed{}, false, fmt.Errorf("left as it is: %s; list it in publish.adoptLaunchTemplates to hand it to amirotate", why)
		}
	}
	if mv.policy.DryRun {
		return LaunchTemplateUsed{ID: id}, true, nil
	}
	created, err := cl.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateId:   aws.String(id),
		SourceVersion:      aws.String(strconv.FormatInt(defNumber, 10)),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(image)},
		VersionDescription: aws.String(mv.description),
		// The same move, template, image and source version always give the
		// same token, so a retry after a lost response gets the version it
		// already made instead of another one.
		ClientToken: aws.String(publishToken(mv.tokenKey, id, image, defNumber)),
	})
	audit(ctx, "CreateLaunchTemplateVersion", pub.Region, []string{id, image}, fmt.Sprintf(mv.why, pub.InstanceID), err)
	if err != nil {
		return LaunchTemplateUsed{}, false, fmt.Errorf("creating a version with %s: %w", image, err)
	}
	if created.LaunchTemplateVersion == nil {
		return LaunchTemplateUsed{}, false, fmt.Errorf("creating a version with %s: no version returned", image)
	}
	newNumber := aws.ToInt64(created.LaunchTemplateVersion.VersionNumber)
	_, err = cl.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{
		LaunchTemplateId: aws.String(id),
		DefaultVersion:   aws.String(strconv.FormatInt(newNumber, 10)),
	})
	audit(ctx, "ModifyLaunchTemplate", pub.Region, []string{id, strconv.FormatInt(newNumber, 10)}, "make the version with "+image+" the default", err)
	if err != nil {
		return LaunchTemplateUsed{}, false, fmt.Errorf("making version %d the default: %w", newNumber, err)
	}
	return LaunchTemplateUsed{ID: id, Version: newNumber}, true, nil
}

// publishToken is CreateLaunchTemplateVersion's idempotency token (≤ 128
// ASCII characters).
func publishToken(key, templateID, image string, sourceVersion int64) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{"amirotate-publish", key, templateID, image, strconv.FormatInt(sourceVersion, 10)}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// trackedTemplate is a launch template tagged amirotate:track=<instance>.
type trackedTemplate struct{ id, name, instanceID string }

// trackedTemplates lists the launch templates that track instanceIDs (one
// paginated DescribeLaunchTemplates per chunk of ids; nil: every tracked
// template). failed names the instances whose templates could not be
// listed, with the error ("" for all of them when instanceIDs is nil).
func trackedTemplates(ctx context.Context, cl ec2.DescribeLaunchTemplatesAPIClient, instanceIDs []string, pageSize int32) (found []trackedTemplate, failed map[string]error) {
	wanted := map[string]bool{}
	for _, id := range instanceIDs {
		wanted[id] = true
	}
	chunks := slices.Collect(slices.Chunk(instanceIDs, filterChunk))
	if instanceIDs == nil {
		chunks = [][]string{{""}}
	}
	failed = map[string]error{}
	for _, c := range chunks {
		filter := ec2x.Filter("tag:"+rotation.TagTrack, c...)
		if instanceIDs == nil {
			filter = ec2x.Filter("tag-key", rotation.TagTrack)
		}
		in := &ec2.DescribeLaunchTemplatesInput{
			Filters:    []types.Filter{filter},
			MaxResults: aws.Int32(200),
		}
		if pageSize > 0 {
			in.MaxResults = aws.Int32(pageSize)
		}
		pg := ec2.NewDescribeLaunchTemplatesPaginator(cl, in)
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				for _, id := range c {
					failed[id] = err
				}
				break
			}
			for _, lt := range page.LaunchTemplates {
				for _, t := range lt.Tags {
					// The tag's value is the instance; an API that ignored the
					// filter cannot make us touch another template.
					if aws.ToString(t.Key) == rotation.TagTrack && (instanceIDs == nil || wanted[aws.ToString(t.Value)]) {
						found = append(found, trackedTemplate{id: aws.ToString(lt.LaunchTemplateId), name: aws.ToString(lt.LaunchTemplateName), instanceID: aws.ToString(t.Value)})
					}
				}
			}
		}
	}
	return found, failed
}
