package ec2sim

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// The product reaches the simulator through the standard configuration
// (AWS_ENDPOINT_URL_EC2 etc.), not through special code: check that path.
func TestEnvVars_LoadDefaultConfigReachesEveryService(t *testing.T) {
	e := newEnv(t, Options{})
	for _, kv := range EnvVars(e.srv.URL, "eu-west-1") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_PROFILE", "")
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(imgs.Images) != 2 || *imgs.Images[0].ImageId != baseImageID("eu-west-1", "x86_64") {
		t.Fatalf("ec2: %+v %v", imgs, err)
	}
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("p"), Value: aws.String("v")}); err != nil {
		t.Fatalf("ssm: %v", err)
	}
	if _, err := autoscaling.NewFromConfig(cfg).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{}); err != nil {
		t.Fatalf("autoscaling: %v", err)
	}
	st := e.sim.Stats().Calls["eu-west-1"]
	if st["DescribeImages"] != 1 || st["ssm:PutParameter"] != 1 || st["autoscaling:DescribeAutoScalingGroups"] != 1 {
		t.Fatalf("calls = %v", st)
	}
}

func TestDescribeImages_ExecutableByAndOwners(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := context.Background()
	shared, _ := availableImage(t, e, "us-east-1", "shared-image", nil)
	availableImage(t, e, "us-east-1", "private-image", nil)
	if _, err := e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(shared),
		LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String("111122223333")}}}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   ec2.DescribeImagesInput
		want int
	}{
		{"executable by account", ec2.DescribeImagesInput{Owners: []string{"self"}, ExecutableUsers: []string{"111122223333"}}, 1},
		{"executable by all", ec2.DescribeImagesInput{ExecutableUsers: []string{"all"}}, 2},
		{"executable by self", ec2.DescribeImagesInput{ExecutableUsers: []string{"self"}}, 4},
		{"owner account id", ec2.DescribeImagesInput{Owners: []string{AccountID}}, 2},
		{"owner amazon id", ec2.DescribeImagesInput{Owners: []string{AmazonOwnerID}}, 2},
		{"owner marketplace", ec2.DescribeImagesInput{Owners: []string{"aws-marketplace"}}, 0},
		{"is-public", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("is-public"), Values: []string{"false"}}}}, 2},
		{"creation-date wildcard", ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{{Name: aws.String("creation-date"), Values: []string{"2026-11-25T*"}}}}, 2},
		{"owner-id filter", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("owner-id"), Values: []string{AmazonOwnerID}}}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.ec2.DescribeImages(ctx, &tc.in)
			if err != nil || len(out.Images) != tc.want {
				t.Fatalf("got %d images (%v), want %d", len(out.Images), err, tc.want)
			}
		})
	}
}

func TestSmallDescribes_RegionsZonesAttributes(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := context.Background()
	regs, err := e.ec2.DescribeRegions(ctx, &ec2.DescribeRegionsInput{Filters: []ec2types.Filter{{Name: aws.String("region-name"), Values: []string{"eu-*"}}}})
	if err != nil || len(regs.Regions) != 1 || *regs.Regions[0].RegionName != "eu-west-1" {
		t.Fatalf("regions: %+v %v", regs, err)
	}
	zones, err := e.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{}, inRegion("ap-southeast-2"))
	if err != nil || len(zones.AvailabilityZones) != 3 || *zones.AvailabilityZones[0].ZoneName != "ap-southeast-2a" {
		t.Fatalf("zones: %+v %v", zones, err)
	}
	if _, err := e.ec2.DescribeAccountAttributes(ctx, &ec2.DescribeAccountAttributesInput{}); err != nil {
		t.Fatal(err)
	}
	img, _ := availableImage(t, e, "us-east-1", "attr-image", nil)
	for _, a := range ec2types.ImageAttributeName("").Values() {
		t.Run(string(a), func(t *testing.T) {
			if _, err := e.ec2.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(img), Attribute: a}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img), Description: &ec2types.AttributeValue{Value: aws.String("new text")}}); err != nil {
		t.Fatal(err)
	}
	if d := *e.image(t, "us-east-1", img).Description; d != "new text" {
		t.Fatalf("description = %q", d)
	}
}
