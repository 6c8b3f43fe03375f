// Package demofleet seeds a small, tagged EC2 fleet for demos and
// end-to-end tests: five instances in two rotation policies, extra data
// volumes on some, and a launch template that tracks one instance.
//
// Everything is created through the AWS SDK, so the same fleet can be
// seeded into the local simulator, moto or a real account.
package demofleet

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/rotation"
)

//go:embed policies/*.json
var policyFiles embed.FS

// PolicyNames are the demo policies, in the order Policies returns them.
var PolicyNames = []string{"web", "db"}

// Instance is one seeded instance.
type Instance struct {
	ID     string
	Name   string
	Policy string
	// DataVolumeGiB is the size of the extra EBS volume (0 = root volume only).
	DataVolumeGiB int32
}

// Fleet is what Seed created.
type Fleet struct {
	Region      string
	BaseImageID string // the Amazon-owned image the instances run
	Instances   []Instance
	// LaunchTemplateID is the template tagged amirotate:track=<TrackedInstance>.
	LaunchTemplateID   string
	LaunchTemplateName string
	TrackedInstance    string
	// Policies rotate the fleet: "web" and "db", copy targets other than Region.
	Policies []rotation.Policy
}

// InstanceIDs returns the ids of the fleet's instances in policy.
func (f Fleet) InstanceIDs(policy string) []string {
	var ids []string
	for _, in := range f.Instances {
		if in.Policy == policy {
			ids = append(ids, in.ID)
		}
	}
	return ids
}

// spec is one instance to launch.
type spec struct {
	name, policy, team string
	dataGiB            int32
}

var fleetSpec = []spec{
	{name: "web-1", policy: "web", team: "frontend"},
	{name: "web-2", policy: "web", team: "frontend"},
	{name: "web-3", policy: "web", team: "frontend", dataGiB: 20},
	{name: "db-1", policy: "db", team: "data", dataGiB: 100},
	{name: "db-2", policy: "db", team: "data", dataGiB: 100},
}

// Seed launches the demo fleet in cfg.Region and waits until its instances
// run. Each call launches a new fleet: seed once per endpoint.
func Seed(ctx context.Context, cfg aws.Config) (Fleet, error) {
	if cfg.Region == "" {
		return Fleet{}, errors.New("demofleet: the AWS config has no region")
	}
	policies, err := Policies(cfg.Region)
	if err != nil {
		return Fleet{}, err
	}
	client := ec2.NewFromConfig(cfg)
	base, err := baseImage(ctx, client)
	if err != nil {
		return Fleet{}, err
	}
	fleet := Fleet{Region: cfg.Region, BaseImageID: base, Policies: policies}
	for _, s := range fleetSpec {
		id, err := launch(ctx, client, base, s)
		if err != nil {
			return Fleet{}, err
		}
		fleet.Instances = append(fleet.Instances, Instance{ID: id, Name: s.name, Policy: s.policy, DataVolumeGiB: s.dataGiB})
	}
	ids := make([]string, 0, len(fleet.Instances))
	for _, in := range fleet.Instances {
		ids = append(ids, in.ID)
	}
	// Short delays suit the simulator; against AWS the waiter backs off to MaxDelay.
	waiter := ec2.NewInstanceRunningWaiter(client, func(o *ec2.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 15*time.Second
	})
	if err := waiter.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids}, 10*time.Minute); err != nil {
		return Fleet{}, fmt.Errorf("demofleet: waiting for the instances to run: %w", err)
	}

	tracked := fleet.Instances[0]
	fleet.TrackedInstance = tracked.ID
	fleet.LaunchTemplateName = "demo-" + tracked.Name + "-" + tracked.ID
	lt, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(fleet.LaunchTemplateName),
		VersionDescription: aws.String("seeded with the base image"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId:      aws.String(base),
			InstanceType: types.InstanceTypeT3Micro,
		},
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeLaunchTemplate,
			Tags:         []types.Tag{tag("amirotate:track", tracked.ID), tag("Name", tracked.Name)},
		}},
	})
	if err != nil {
		return Fleet{}, fmt.Errorf("demofleet: creating launch template %s: %w", fleet.LaunchTemplateName, err)
	}
	if lt.LaunchTemplate == nil || lt.LaunchTemplate.LaunchTemplateId == nil {
		return Fleet{}, errors.New("demofleet: CreateLaunchTemplate answered without a launch template id")
	}
	fleet.LaunchTemplateID = *lt.LaunchTemplate.LaunchTemplateId
	// The template launches the base image, not one of amirotate's: the
	// policy that publishes to it adopts it by name, as an operator would.
	for i, p := range fleet.Policies {
		if p.Name == tracked.Policy && p.Publish.LaunchTemplates {
			fleet.Policies[i].Publish.AdoptLaunchTemplates = append(p.Publish.AdoptLaunchTemplates, fleet.LaunchTemplateID)
		}
	}
	return fleet, nil
}

// Policies returns the demo policies, decoded and validated as users'
// policies are (defaults filled in), for a fleet whose home region is home:
// copy targets equal to home are dropped (a region does not copy to itself).
func Policies(home string) ([]rotation.Policy, error) {
	out := make([]rotation.Policy, 0, len(PolicyNames))
	for _, name := range PolicyNames {
		raw, err := PolicyJSON(name)
		if err != nil {
			return nil, err
		}
		p, err := rotation.DecodePolicy(raw)
		if err != nil {
			return nil, fmt.Errorf("demofleet: policy %s: %w", name, err)
		}
		p.CopyTo = slices.DeleteFunc(p.CopyTo, func(c rotation.CopyTarget) bool { return c.Region == home })
		out = append(out, p)
	}
	return out, nil
}

// PolicyJSON returns the demo policy file for name ("web" or "db").
func PolicyJSON(name string) ([]byte, error) {
	raw, err := policyFiles.ReadFile("policies/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("demofleet: no demo policy %q (have %v)", name, PolicyNames)
	}
	return raw, nil
}

// baseImage picks the newest available Amazon-owned image of the region.
func baseImage(ctx context.Context, client *ec2.Client) (string, error) {
	out, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"amazon"},
		Filters: []types.Filter{{Name: aws.String("state"), Values: []string{"available"}}},
	})
	if err != nil {
		return "", fmt.Errorf("demofleet: listing Amazon images: %w", err)
	}
	var best *types.Image
	for i := range out.Images {
		img := &out.Images[i]
		if img.ImageId == nil {
			continue
		}
		// CreationDate is ISO-8601 with a fixed layout, so strings order like times.
		if best == nil || aws.ToString(img.CreationDate) > aws.ToString(best.CreationDate) {
			best = img
		}
	}
	if best == nil {
		return "", errors.New("demofleet: the region has no available Amazon-owned image to launch from")
	}
	return *best.ImageId, nil
}

// launch starts one instance of s from image and returns its id.
func launch(ctx context.Context, client *ec2.Client, image string, s spec) (string, error) {
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(image),
		InstanceType: types.InstanceTypeT3Micro,
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{
				tag("Name", s.name), tag("Team", s.team), tag("amirotate:policy", s.policy),
			},
		}},
	}
	if s.dataGiB > 0 {
		in.BlockDeviceMappings = []types.BlockDeviceMapping{{
			DeviceName: aws.String("/dev/sdf"),
			Ebs: &types.EbsBlockDevice{
				VolumeSize:          aws.Int32(s.dataGiB),
				VolumeType:          types.VolumeTypeGp3,
				DeleteOnTermination: aws.Bool(true),
			},
		}}
	}
	out, err := client.RunInstances(ctx, in)
	if err != nil {
		return "", fmt.Errorf("demofleet: launching %s: %w", s.name, err)
	}
	if len(out.Instances) != 1 || out.Instances[0].InstanceId == nil {
		return "", fmt.Errorf("demofleet: launching %s: RunInstances answered %d instances", s.name, len(out.Instances))
	}
	return *out.Instances[0].InstanceId, nil
}

func tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }
