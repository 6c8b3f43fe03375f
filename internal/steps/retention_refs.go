package steps

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// references returns what uses each of ids (images in region). It fails
// rather than return a partial answer: a reference missed is an image
// deleted while in use.
//
// Sources:
//   - DescribeImageReferences: instances (any state), SSM parameters, the
//     latest launch template version, Image Builder recipes and any type EC2
//     adds later (IncludeAllResourceTypes). Launch templates are checked at
//     version depth 1: publish adds a version per rotation, and the default
//     depth would keep every image of the last versions alive although
//     nothing launches from them.
//   - The default and latest version of every launch template in the
//     region, read directly (one paginated DescribeLaunchTemplateVersions):
//     a default version older than any depth is still what launches.
//   - Auto Scaling groups: their launch template (and mixed-instances
//     templates and overrides) resolved to the version they launch ($Default,
//     $Latest or a pinned number), override image ids, and every launch
//     configuration's image (a configuration can be attached to a group at
//     any time).
func (r *Retention) references(ctx context.Context, region string, ids []string) (map[string][]string, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	refs := map[string][]string{}
	add := func(image, what string) {
		if want[image] && !slices.Contains(refs[image], what) {
			refs[image] = append(refs[image], what)
		}
	}
	cl := r.EC2.In(region)
	if err := r.imageReferences(ctx, cl, ids, add); err != nil {
		return nil, err
	}
	heads, err := r.launchTemplateHeads(ctx, cl)
	if err != nil {
		return nil, err
	}
	for _, h := range heads.list {
		for _, v := range []ltVersion{h.def, h.latest} {
			if v.number == 0 {
				continue
			}
			role := "latest"
			if v.number == h.def.number {
				role = "default"
			}
			add(v.imageID, fmt.Sprintf("launch-template %s version %d (%s)", h.id, v.number, role))
		}
	}
	if err := r.autoScalingReferences(ctx, region, cl, heads, add); err != nil {
		return nil, err
	}
	for id := range refs {
		slices.Sort(refs[id])
	}
	return refs, nil
}

// imageReferences asks EC2 which resources reference ids, 10 images per
// call (the API's limit), every page.
func (r *Retention) imageReferences(ctx context.Context, cl ec2x.RetentionEC2, ids []string, add func(image, what string)) error {
	for c := range slices.Chunk(ids, refChunk) {
		in := &ec2.DescribeImageReferencesInput{
			ImageIds:                c,
			IncludeAllResourceTypes: aws.Bool(true),
			ResourceTypes: []types.ResourceTypeRequest{{
				ResourceType: types.ImageReferenceResourceTypeEc2LaunchTemplate,
				ResourceTypeOptions: []types.ResourceTypeOption{{
					OptionName:   types.ImageReferenceOptionNameVersionDepth,
					OptionValues: []string{"1"},
				}},
			}},
		}
		if r.pageSize > 0 {
			in.MaxResults = aws.Int32(max(r.pageSize, 5)) // the API's minimum
		}
		p := ec2.NewDescribeImageReferencesPaginator(cl, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("reading references of %s: %w", strings.Join(c, ","), err)
			}
			for _, ref := range page.ImageReferences {
				add(aws.ToString(ref.ImageId), describeReference(ref))
			}
		}
	}
	return nil
}

// describeReference names a referencing resource for people:
// "instance i-…", "launch-template lt-…", "ssm-parameter /a/b".
func describeReference(ref types.ImageReference) string {
	arn := aws.ToString(ref.Arn)
	resource := arn
	if parts := strings.SplitN(arn, ":", 6); len(parts) == 6 {
		resource = parts[5]
	}
	typ, id, _ := strings.Cut(resource, "/")
	switch ref.ResourceType {
	case types.ImageReferenceResourceTypeEc2Instance:
		return "instance " + id
	case types.ImageReferenceResourceTypeEc2LaunchTemplate:
		return "launch-template " + id
	case types.ImageReferenceResourceTypeSsmParameter:
		if typ == "parameter" && !strings.HasPrefix(id, "/") {
			id = "/" + id
		}
		return "ssm-parameter " + id
	}
	if arn == "" {
		return string(ref.ResourceType)
	}
	return string(ref.ResourceType) + " " + arn
}

// ltVersion is one launch template version: its number and image.
type ltVersion struct {
	number  int64
	imageID string
}

// ltHead is a launch template's default and latest version.
type ltHead struct {
	id, name    string
	def, latest ltVersion
}

// ltHeads indexes the heads by template id and name.
type ltHeads struct {
	list   []*ltHead
	byID   map[string]*ltHead
	byName map[string]*ltHead
}

func (h ltHeads) find(id, name string) *ltHead {
	if id != "" {
		return h.byID[id]
	}
	return h.byName[name]
}

// launchTemplateHeads reads the default and latest version of every launch
// template in the region. Aliases (resolve:ssm:…) are resolved to the image
// id they stand for.
func (r *Retention) launchTemplateHeads(ctx context.Context, cl ec2x.RetentionEC2) (ltHeads, error) {
	h := ltHeads{byID: map[string]*ltHead{}, byName: map[string]*ltHead{}}
	p := ec2.NewDescribeLaunchTemplateVersionsPaginator(cl, &ec2.DescribeLaunchTemplateVersionsInput{
		Versions:     []string{"$Default", "$Latest"},
		ResolveAlias: aws.Bool(true),
		MaxResults:   r.limit(200),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return h, fmt.Errorf("reading launch template versions: %w", err)
		}
		for _, v := range page.LaunchTemplateVersions {
			id := aws.ToString(v.LaunchTemplateId)
			head := h.byID[id]
			if head == nil {
				head = &ltHead{id: id, name: aws.ToString(v.LaunchTemplateName)}
				h.byID[id] = head
				h.byName[head.name] = head
				h.list = append(h.list, head)
			}
			ver := ltVersion{number: aws.ToInt64(v.VersionNumber)}
			if v.LaunchTemplateData != nil {
				ver.imageID = aws.ToString(v.LaunchTemplateData.ImageId)
			}
			if aws.ToBool(v.DefaultVersion) {
				head.def = ver
			}
			// $Latest is the highest version number returned for a template.
			if ver.number > head.latest.number {
				head.latest = ver
			}
		}
	}
	return h, nil
}

// asgUse is a group launching from a launch template version.
type asgUse struct {
	group   string
	version string // "$Default", "$Latest" or a number
}

// autoScalingReferences adds the images Auto Scaling groups launch and the
// images of all launch configurations.
func (r *Retention) autoScalingReferences(ctx context.Context, region string, cl ec2x.RetentionEC2, heads ltHeads, add func(image, what string)) error {
	as := r.AutoScaling.In(region)
	// Template (id or name) → the groups and versions that use it.
	type ltRef struct{ id, name string }
	uses := map[ltRef][]asgUse{}
	var order []ltRef
	useSpec := func(group string, spec *asgtypes.LaunchTemplateSpecification) {
		if spec == nil {
			return
		}
		k := ltRef{id: aws.ToString(spec.LaunchTemplateId)}
		if k.id == "" {
			k.name = aws.ToString(spec.LaunchTemplateName)
		}
		v := aws.ToString(spec.Version)
		if v == "" {
			v = "$Default" // Auto Scaling's default
		}
		if _, ok := uses[k]; !ok {
			order = append(order, k)
		}
		uses[k] = append(uses[k], asgUse{group: group, version: v})
	}
	gp := autoscaling.NewDescribeAutoScalingGroupsPaginator(as, &autoscaling.DescribeAutoScalingGroupsInput{
		MaxRecords: r.limit(100),
		// Instances are covered by the instance references.
		IncludeInstances: aws.Bool(false),
	})
	for gp.HasMorePages() {
		page, err := gp.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("reading auto scaling groups: %w", err)
		}
		for _, g := range page.AutoScalingGroups {
			name := aws.ToString(g.AutoScalingGroupName)
			useSpec(name, g.LaunchTemplate)
			if mip := g.MixedInstancesPolicy; mip != nil && mip.LaunchTemplate != nil {
				useSpec(name, mip.LaunchTemplate.LaunchTemplateSpecification)
				for _, o := range mip.LaunchTemplate.Overrides {
					useSpec(name, o.LaunchTemplateSpecification)
					if img := aws.ToString(o.ImageId); img != "" {
						add(img, "auto-scaling-group "+name+" (override)")
					}
				}
			}
		}
	}
	for _, k := range order {
		label := k.id
		if label == "" {
			label = k.name
		}
		head := heads.find(k.id, k.name)
		if head != nil {
			label = head.id
		}
		var numbers []string
		for _, u := range uses[k] {
			var v ltVersion
			switch {
			case head != nil && u.version == "$Default":
				v = head.def
			case head != nil && u.version == "$Latest":
				v = head.latest
			case head != nil && u.version == strconv.FormatInt(head.def.number, 10):
				v = head.def
			case head != nil && u.version == strconv.FormatInt(head.latest.number, 10):
				v = head.latest
			default:
				if !slices.Contains(numbers, u.version) {
					numbers = append(numbers, u.version)
				}
				continue
			}
			add(v.imageID, groupReference(u, label, v.number))
		}
		if len(numbers) == 0 {
			continue
		}
		// Numbers are read in one call; an alias ($Default/$Latest of a
		// template the region listing did not show) on its own, since the
		// answer does not say which alias a version stands for.
		versions := map[string][]ltVersion{}
		var plain []string
		for _, n := range numbers {
			if strings.HasPrefix(n, "$") {
				got, err := r.templateVersions(ctx, cl, k.id, k.name, []string{n})
				if err != nil {
					return err
				}
				for _, vs := range got {
					versions[n] = append(versions[n], vs...)
				}
				continue
			}
			plain = append(plain, n)
		}
		if len(plain) > 0 {
			got, err := r.templateVersions(ctx, cl, k.id, k.name, plain)
			if err != nil {
				return err
			}
			for n, vs := range got {
				versions[n] = append(versions[n], vs...)
			}
		}
		for _, u := range uses[k] {
			for _, v := range versions[u.version] {
				add(v.imageID, groupReference(u, label, v.number))
			}
		}
	}
	lp := autoscaling.NewDescribeLaunchConfigurationsPaginator(as, &autoscaling.DescribeLaunchConfigurationsInput{
		MaxRecords: r.limit(100),
	})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("reading launch configurations: %w", err)
		}
		for _, lc := range page.LaunchConfigurations {
			add(aws.ToString(lc.ImageId), "launch-configuration "+aws.ToString(lc.LaunchConfigurationName))
		}
	}
	return nil
}

// groupReference names a group's use of a launch template version: "via
// $Default" or "via $Latest" when the group follows the template (a new
// default version moves the group too), nothing when it pins the number.
func groupReference(u asgUse, template string, number int64) string {
	via := ""
	if strings.HasPrefix(u.version, "$") {
		via = " via " + u.version
	}
	return fmt.Sprintf("auto-scaling-group %s (launch template %s version %d%s)", u.group, template, number, via)
}

// templateVersions reads the given versions of one launch template, keyed
// by the version string asked for. A template or version that no longer
// exists launches nothing and is skipped.
func (r *Retention) templateVersions(ctx context.Context, cl ec2x.RetentionEC2, id, name string, versions []string) (map[string][]ltVersion, error) {
	in := &ec2.DescribeLaunchTemplateVersionsInput{
		Versions:     versions,
		ResolveAlias: aws.Bool(true),
		MaxResults:   r.limit(200),
	}
	if id != "" {
		in.LaunchTemplateId = aws.String(id)
	} else {
		in.LaunchTemplateName = aws.String(name)
	}
	out := map[string][]ltVersion{}
	p := ec2.NewDescribeLaunchTemplateVersionsPaginator(cl, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if ec2x.IsNotFound(err) {
			// A missing version fails the whole call: ask for the others
			// one by one so one deleted version cannot hide the rest.
			if len(versions) > 1 {
				return r.templateVersionsOneByOne(ctx, cl, id, name, versions)
			}
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading versions %s of launch template %s%s: %w", strings.Join(versions, ","), id, name, err)
		}
		for _, v := range page.LaunchTemplateVersions {
			ver := ltVersion{number: aws.ToInt64(v.VersionNumber)}
			if v.LaunchTemplateData != nil {
				ver.imageID = aws.ToString(v.LaunchTemplateData.ImageId)
			}
			key := strconv.FormatInt(ver.number, 10)
			out[key] = append(out[key], ver)
		}
	}
	return out, nil
}

func (r *Retention) templateVersionsOneByOne(ctx context.Context, cl ec2x.RetentionEC2, id, name string, versions []string) (map[string][]ltVersion, error) {
	out := map[string][]ltVersion{}
	for _, v := range versions {
		got, err := r.templateVersions(ctx, cl, id, name, []string{v})
		if err != nil {
			return nil, err
		}
		for k, vs := range got {
			out[k] = append(out[k], vs...)
		}
	}
	return out, nil
}
