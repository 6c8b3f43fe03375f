package ec2sim

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

func TestInstances_LifecycleFiltersAndPaginator(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, e.runInstance(t, "us-east-1", map[string]string{"Team": []string{"alpha", "beta", "gamma"}[i%3], "amirotate:policy": "nightly"}))
	}
	if _, err := e.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: ids[:2]}); err != nil {
		t.Fatal(err)
	}
	term, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids[2:3]})
	if err != nil || term.TerminatingInstances[0].CurrentState.Name != ec2types.InstanceStateNameShuttingDown {
		t.Fatalf("terminate: %+v %v", term, err)
	}
	_, err = e.ec2.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: ids[2:3]})
	wantCode(t, err, "IncorrectInstanceState", 400)
	tests := []struct {
		name    string
		filters []ec2types.Filter
		want    int
	}{
		{"all", nil, 12},
		{"tag wildcard", []ec2types.Filter{{Name: aws.String("tag:Team"), Values: []string{"a*", "g?mma"}}}, 8},
		{"running only", []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}}, 9},
		{"stopped and tagged", []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"stopped"}}, {Name: aws.String("tag-key"), Values: []string{"amirotate:policy"}}}, 2},
		{"image id", []ec2types.Filter{{Name: aws.String("image-id"), Values: []string{BaseImageID("us-east-1")}}}, 12},
		{"instance id", []ec2types.Filter{{Name: aws.String("instance-id"), Values: ids[5:7]}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pg := ec2.NewDescribeInstancesPaginator(e.ec2, &ec2.DescribeInstancesInput{Filters: tc.filters, MaxResults: aws.Int32(5)})
			got := 0
			for pg.HasMorePages() {
				out, err := pg.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range out.Reservations {
					got += len(r.Instances)
				}
			}
			if got != tc.want {
				t.Fatalf("got %d instances, want %d", got, tc.want)
			}
		})
	}
	_, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInstanceID.NotFound", 400)
	_, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids[:1], MaxResults: aws.Int32(5)})
	wantCode(t, err, "InvalidParameterCombination", 400)
	// Terminated instances drop out of sight after an hour.
	e.clock.Advance(2 * time.Hour)
	_, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids[2:3]})
	wantCode(t, err, "InvalidInstanceID.NotFound", 400)
	// Volumes: root 8 GiB by default plus requested extras.
	id := e.runInstance(t, "us-east-1", nil, 100, 20)
	out, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations[0].Instances[0].BlockDeviceMappings) != 3 {
		t.Fatalf("volumes: %+v %v", out, err)
	}
}

func TestDescribeSnapshots_PaginatorAndFilters(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	inst := e.runInstance(t, "us-east-1", nil, 50)
	for i := 0; i < 6; i++ {
		if _, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String(fmt.Sprintf("snapimg-%d", i)),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String(fmt.Sprint(i % 2))}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(in *ec2.DescribeSnapshotsInput) int {
		pg := ec2.NewDescribeSnapshotsPaginator(e.ec2, in)
		n := 0
		for pg.HasMorePages() {
			out, err := pg.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n += len(out.Snapshots)
		}
		return n
	}
	if n := count(&ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(5)}); n != 12 {
		t.Fatalf("self snapshots = %d, want 12", n)
	}
	if n := count(&ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:k"), Values: []string{"1"}}, {Name: aws.String("status"), Values: []string{"pending"}}}, MaxResults: aws.Int32(5)}); n != 6 {
		t.Fatalf("tagged pending = %d, want 6", n)
	}
	e.clock.Advance(time.Hour)
	if n := count(&ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{{Name: aws.String("status"), Values: []string{"completed"}}, {Name: aws.String("description"), Values: []string{"Created by CreateImage(" + inst + ")*"}}}}); n != 12 {
		t.Fatalf("completed = %d, want 12", n)
	}
	_, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snap-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSnapshot.NotFound", 400)
}

func TestTags_CreateDeleteDescribe(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	img, inst := availableImage(t, e, "us-east-1", "tagged-image", nil)
	snap := *e.image(t, "us-east-1", img).BlockDeviceMappings[0].Ebs.SnapshotId
	tg := func(k, v string) ec2types.Tag { return ec2types.Tag{Key: aws.String(k), Value: aws.String(v)} }
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{img, snap, inst}, Tags: []ec2types.Tag{tg("amirotate:latest", "true"), tg("env", "")}}); err != nil {
		t.Fatal(err)
	}
	out, err := e.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{{Name: aws.String("key"), Values: []string{"amirotate:latest"}}}})
	if err != nil || len(out.Tags) != 3 {
		t.Fatalf("describe tags: %+v %v", out, err)
	}
	// DeleteTags with a value only deletes on a match; without one, always.
	if _, err := e.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{tg("amirotate:latest", "false")}}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.image(t, "us-east-1", img).Tags); n != 2 {
		t.Fatalf("tags after non-matching delete: %d", n)
	}
	if _, err := e.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{img, snap}, Tags: []ec2types.Tag{{Key: aws.String("amirotate:latest")}}}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.image(t, "us-east-1", img).Tags); n != 1 {
		t.Fatalf("tags after delete: %d", n)
	}
	var many []ec2types.Tag
	for i := 0; i < 50; i++ {
		many = append(many, tg(fmt.Sprintf("k%02d", i), "v"))
	}
	tests := []struct {
		name string
		in   ec2.CreateTagsInput
		code string
	}{
		{"limit", ec2.CreateTagsInput{Resources: []string{img}, Tags: many}, "TagLimitExceeded"},
		{"reserved", ec2.CreateTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{tg("aws:cloudformation", "x")}}, "InvalidParameterValue"},
		{"long key", ec2.CreateTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{tg(strings.Repeat("k", 129), "x")}}, "InvalidParameterValue"},
		{"long value", ec2.CreateTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{tg("k", strings.Repeat("v", 257))}}, "InvalidParameterValue"},
		{"empty key", ec2.CreateTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{tg("", "x")}}, "InvalidTagKey.Malformed"},
		{"missing image", ec2.CreateTagsInput{Resources: []string{img, "ami-0123456789abcdef0"}, Tags: []ec2types.Tag{tg("a", "b")}}, "InvalidAMIID.NotFound"},
		{"bad id", ec2.CreateTagsInput{Resources: []string{"xyz-1"}, Tags: []ec2types.Tag{tg("a", "b")}}, "InvalidID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ec2.CreateTags(ctx, &tc.in)
			wantCode(t, err, tc.code, 400)
		})
	}
	// The failed multi-resource call changed nothing.
	if n := len(e.image(t, "us-east-1", img).Tags); n != 1 {
		t.Fatalf("tags after failed calls: %d", n)
	}
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{img}, Tags: many[:49]}); err != nil {
		t.Fatalf("49 + 1 tags should fit: %v", err)
	}
}

func TestLaunchTemplates_VersionsAndDefault(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	img, _ := availableImage(t, e, "us-east-1", "lt-image", nil)
	base := BaseImageID("us-east-1")
	lt, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("web-lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(base), InstanceType: ec2types.InstanceTypeT3Small,
			SecurityGroupIds: []string{"sg-1", "sg-2"}, TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}}},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{{Key: aws.String("amirotate:track"), Value: aws.String("i-1")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ltID := lt.LaunchTemplate.LaunchTemplateId
	_, err = e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("web-lt"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{}})
	wantCode(t, err, "InvalidLaunchTemplateName.AlreadyExistsException", 400)
	v2, err := e.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: ltID, SourceVersion: aws.String("$Default"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(img)}})
	if err != nil {
		t.Fatal(err)
	}
	d := v2.LaunchTemplateVersion.LaunchTemplateData
	if *v2.LaunchTemplateVersion.VersionNumber != 2 || *d.ImageId != img || d.InstanceType != ec2types.InstanceTypeT3Small || len(d.SecurityGroupIds) != 2 || len(d.TagSpecifications) != 1 || *d.TagSpecifications[0].Tags[0].Value != "b" {
		t.Fatalf("inherited version = %+v", d)
	}
	if *v2.LaunchTemplateVersion.DefaultVersion {
		t.Fatal("new version became default")
	}
	mod, err := e.ec2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateName: aws.String("web-lt"), DefaultVersion: aws.String("2")})
	if err != nil || *mod.LaunchTemplate.DefaultVersionNumber != 2 {
		t.Fatalf("modify: %+v %v", mod, err)
	}
	vs, err := e.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: ltID, Versions: []string{"$Default", "$Latest", "1"}})
	if err != nil || len(vs.LaunchTemplateVersions) != 2 {
		t.Fatalf("versions: %+v %v", vs, err)
	}
	_, err = e.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: ltID, Versions: []string{"7"}})
	wantCode(t, err, "InvalidLaunchTemplateId.VersionNotFound", 400)
	lts, err := e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:amirotate:track"), Values: []string{"i-1", "i-2"}}}})
	if err != nil || len(lts.LaunchTemplates) != 1 || *lts.LaunchTemplates[0].LatestVersionNumber != 2 {
		t.Fatalf("describe lts: %+v %v", lts, err)
	}
	_, err = e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"nope"}})
	wantCode(t, err, "InvalidLaunchTemplateName.NotFoundException", 400)
	// Launching from the template uses its default version's image.
	run, err := e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{MinCount: aws.Int32(1), MaxCount: aws.Int32(1), LaunchTemplate: &ec2types.LaunchTemplateSpecification{LaunchTemplateId: ltID}})
	if err != nil || *run.Instances[0].ImageId != img {
		t.Fatalf("run from template: %+v %v", run, err)
	}
	if _, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: ltID}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{*ltID}})
	wantCode(t, err, "InvalidLaunchTemplateId.NotFound", 400)
}

func TestDescribeImageReferences_InstancesTemplatesParameters(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	used, _ := availableImage(t, e, "us-east-1", "used-image", nil)
	unused, _ := availableImage(t, e, "us-east-1", "unused-image", nil)
	ltOld, _ := availableImage(t, e, "us-east-1", "old-lt-image", nil)
	for i := 0; i < 6; i++ {
		if _, err := e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(used), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}); err != nil {
			t.Fatal(err)
		}
	}
	lt, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("ref-lt"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ltOld)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(used)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/amirotate/nightly/latest"), Value: aws.String(used), DataType: aws.String("aws:ec2:image"), Type: ssmtypes.ParameterTypeString}); err != nil {
		t.Fatal(err)
	}
	pg := ec2.NewDescribeImageReferencesPaginator(e.ec2, &ec2.DescribeImageReferencesInput{ImageIds: []string{used, unused, ltOld}, IncludeAllResourceTypes: aws.Bool(true), MaxResults: aws.Int32(5)})
	byType := map[string]map[string]int{}
	pages := 0
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range out.ImageReferences {
			if byType[*r.ImageId] == nil {
				byType[*r.ImageId] = map[string]int{}
			}
			byType[*r.ImageId][string(r.ResourceType)]++
		}
	}
	if pages < 2 || byType[used]["ec2:Instance"] != 6 || byType[used]["ec2:LaunchTemplate"] != 1 || byType[used]["ssm:Parameter"] != 1 ||
		byType[ltOld]["ec2:LaunchTemplate"] != 1 || len(byType[unused]) != 0 {
		t.Fatalf("references in %d pages: %v", pages, byType)
	}
	// Only instances, and only stopped ones.
	out, err := e.ec2.DescribeImageReferences(ctx, &ec2.DescribeImageReferencesInput{ImageIds: []string{used},
		ResourceTypes: []ec2types.ResourceTypeRequest{{ResourceType: ec2types.ImageReferenceResourceTypeEc2Instance,
			ResourceTypeOptions: []ec2types.ResourceTypeOption{{OptionName: ec2types.ImageReferenceOptionNameStateName, OptionValues: []string{"stopped"}}}}}})
	if err != nil || len(out.ImageReferences) != 0 {
		t.Fatalf("stopped-only: %+v %v", out, err)
	}
	_, err = e.ec2.DescribeImageReferences(ctx, &ec2.DescribeImageReferencesInput{ImageIds: []string{used}})
	wantCode(t, err, "MissingParameter", 400)
}

func TestSSM_ParameterStore(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	img := BaseImageID("us-east-1")
	put := func(name, value string, overwrite bool) (*ssm.PutParameterOutput, error) {
		return e.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: ssmtypes.ParameterTypeString,
			DataType: aws.String("aws:ec2:image"), Overwrite: aws.Bool(overwrite)})
	}
	if out, err := put("/amirotate/p/i-1/latest", img, false); err != nil || out.Version != 1 {
		t.Fatalf("put: %+v %v", out, err)
	}
	_, err := put("/amirotate/p/i-1/latest", img, false)
	wantCode(t, err, "ParameterAlreadyExists", 400)
	arm := baseImageID("us-east-1", "arm64")
	// An image of another region passes the call and fails SSM's later
	// validation: the parameter keeps its value.
	if out, err := put("/amirotate/p/i-1/latest", BaseImageID("eu-west-1"), true); err != nil || out.Version != 2 {
		t.Fatalf("overwrite with a foreign image: %+v %v", out, err)
	}
	if got, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/amirotate/p/i-1/latest")}); err != nil || *got.Parameter.Value != img || got.Parameter.Version != 1 {
		t.Fatalf("after a foreign image: %+v %v", got, err)
	}
	if out, err := put("/amirotate/p/i-1/latest", arm, true); err != nil || out.Version != 2 {
		t.Fatalf("overwrite: %+v %v", out, err)
	}
	_, err = put("/amirotate/p/i-1/bad", "not-an-ami", false)
	wantCode(t, err, "ValidationException", 400)
	_, err = put("/aws/reserved", img, false)
	wantCode(t, err, "ValidationException", 400)
	got, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/amirotate/p/i-1/latest")})
	if err != nil || *got.Parameter.Value != arm || *got.Parameter.DataType != "aws:ec2:image" || got.Parameter.Version != 2 || got.Parameter.LastModifiedDate == nil {
		t.Fatalf("get: %+v %v", got, err)
	}
	old, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/amirotate/p/i-1/latest:1")})
	if err != nil || *old.Parameter.Value != img {
		t.Fatalf("get version 1: %+v %v", old, err)
	}
	_, err = e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/missing")})
	wantCode(t, err, "ParameterNotFound", 400)
	for i := 2; i <= 12; i++ {
		if _, err := put(fmt.Sprintf("/amirotate/p/i-%d/latest", i), img, false); err != nil {
			t.Fatal(err)
		}
	}
	many, err := e.ssm.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{"/amirotate/p/i-1/latest", "/amirotate/p/i-2/latest", "/nope"}})
	if err != nil || len(many.Parameters) != 2 || len(many.InvalidParameters) != 1 {
		t.Fatalf("get parameters: %+v %v", many, err)
	}
	pg := ssm.NewGetParametersByPathPaginator(e.ssm, &ssm.GetParametersByPathInput{Path: aws.String("/amirotate"), Recursive: aws.Bool(true)})
	n := 0
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(out.Parameters)
	}
	if n != 12 {
		t.Fatalf("by path: %d, want 12", n)
	}
	if out, err := e.ssm.GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String("/amirotate")}); err != nil || len(out.Parameters) != 0 {
		t.Fatalf("non-recursive: %+v %v", out, err)
	}
	if _, err := e.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/amirotate/p/i-1/latest")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/amirotate/p/i-1/latest")})
	wantCode(t, err, "ParameterNotFound", 400)
	// Parameters are per region.
	_, err = e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/amirotate/p/i-2/latest")}, func(o *ssm.Options) { o.Region = "eu-west-1" })
	wantCode(t, err, "ParameterNotFound", 400)
}

func TestAutoScaling_GroupsAndLaunchConfigurations(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	img := BaseImageID("us-east-1")
	if _, err := e.asg.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc-1"), ImageId: aws.String(img), InstanceType: aws.String("t3.micro")}); err != nil {
		t.Fatal(err)
	}
	_, err := e.asg.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc-1"), ImageId: aws.String(img), InstanceType: aws.String("t3.micro")})
	wantCode(t, err, "AlreadyExists", 400)
	lt, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("asg-lt"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(img)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-lc"), MinSize: aws.Int32(0), MaxSize: aws.Int32(2), LaunchConfigurationName: aws.String("lc-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-lt"), MinSize: aws.Int32(1), MaxSize: aws.Int32(2),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")}}); err != nil {
		t.Fatal(err)
	}
	pg := autoscaling.NewDescribeAutoScalingGroupsPaginator(e.asg, &autoscaling.DescribeAutoScalingGroupsInput{})
	var groups []astypes.AutoScalingGroup
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, out.AutoScalingGroups...)
	}
	if len(groups) != 2 || *groups[0].LaunchConfigurationName != "lc-1" || *groups[1].LaunchTemplate.LaunchTemplateId != *lt.LaunchTemplate.LaunchTemplateId || *groups[1].LaunchTemplate.Version != "$Latest" {
		t.Fatalf("groups = %+v", groups)
	}
	lcs, err := e.asg.DescribeLaunchConfigurations(ctx, &autoscaling.DescribeLaunchConfigurationsInput{LaunchConfigurationNames: []string{"lc-1"}})
	if err != nil || len(lcs.LaunchConfigurations) != 1 || *lcs.LaunchConfigurations[0].ImageId != img {
		t.Fatalf("launch configurations: %+v %v", lcs, err)
	}
	if _, err := e.asg.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-lc")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.asg.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-lc")})
	wantCode(t, err, "ValidationError", 400)
	st := e.sim.Stats()
	if st.Calls["us-east-1"]["autoscaling:CreateAutoScalingGroup"] != 2 || st.Calls["us-east-1"]["CreateLaunchTemplate"] != 1 {
		t.Fatalf("stats = %v", st.Calls)
	}
}
