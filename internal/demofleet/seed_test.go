package demofleet

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

func regionsOf(p rotation.Policy) []string {
	var rs []string
	for _, c := range p.CopyTo {
		rs = append(rs, c.Region)
	}
	return rs
}

func TestPolicies_DropCopiesToTheHomeRegion(t *testing.T) {
	tests := []struct {
		home   string
		web    []string
		db     []string
		reboot bool
	}{
		{home: "us-east-1", web: []string{"eu-west-1", "ap-southeast-2"}, db: []string{"eu-west-1"}},
		{home: "eu-west-1", web: []string{"ap-southeast-2"}, db: nil},
	}
	for _, tt := range tests {
		t.Run(tt.home, func(t *testing.T) {
			ps, err := Policies(tt.home)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 2 || ps[0].Name != "web" || ps[1].Name != "db" {
				t.Fatalf("want policies web and db, got %+v", ps)
			}
			if got := regionsOf(ps[0]); !slices.Equal(got, tt.web) {
				t.Errorf("web copies to %v, want %v", got, tt.web)
			}
			if got := regionsOf(ps[1]); !slices.Equal(got, tt.db) {
				t.Errorf("db copies to %v, want %v", got, tt.db)
			}
		})
	}
}

func TestPolicies_AsDocumented(t *testing.T) {
	ps, err := Policies("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	web, db := ps[0], ps[1]
	if web.Retention.Keep != 1 || !web.Reboots() || !web.Publish.LaunchTemplates || web.Selector.Tags["amirotate:policy"] != "web" {
		t.Errorf("web: got %+v", web)
	}
	if db.Retention.Keep != 3 || db.Reboots() || db.Selector.Tags["amirotate:policy"] != "db" {
		t.Errorf("db: got %+v", db)
	}
	for _, s := range fleetSpec {
		if s.policy != "web" && s.policy != "db" {
			t.Errorf("instance %s is in policy %q, which no demo policy selects", s.name, s.policy)
		}
	}
}

func TestPolicyJSON_UnknownName(t *testing.T) {
	if _, err := PolicyJSON("nope"); err == nil {
		t.Fatal("want an error for an unknown policy")
	}
}

func TestSeed_LaunchesTheFleetThroughTheSDK(t *testing.T) {
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"eu-west-1", "us-east-1"}, ImageDelay: -1})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	cfg := ec2sim.AWSConfig(srv.URL, "eu-west-1")
	ctx := context.Background()

	fleet, err := Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fleet.Region != "eu-west-1" || len(fleet.InstanceIDs("web")) != 3 || len(fleet.InstanceIDs("db")) != 2 {
		t.Fatalf("got %+v", fleet)
	}
	if got := regionsOf(fleet.Policies[0]); !slices.Equal(got, []string{"ap-southeast-2"}) {
		t.Errorf("web copies from eu-west-1 to %v, want [ap-southeast-2]", got)
	}

	client := ec2.NewFromConfig(cfg)
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag-key"), Values: []string{"amirotate:policy"}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	volumes := map[string]int{}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			volumes[aws.ToString(in.InstanceId)] = len(in.BlockDeviceMappings)
		}
	}
	for _, in := range fleet.Instances {
		want := 1
		if in.DataVolumeGiB > 0 {
			want = 2
		}
		if volumes[in.ID] != want {
			t.Errorf("%s (%s): %d volumes running, want %d", in.Name, in.ID, volumes[in.ID], want)
		}
	}

	lts, err := client.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []types.Filter{
		{Name: aws.String("tag:amirotate:track"), Values: []string{fleet.TrackedInstance}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lts.LaunchTemplates) != 1 || aws.ToString(lts.LaunchTemplates[0].LaunchTemplateId) != fleet.LaunchTemplateID {
		t.Errorf("launch templates tracking %s: got %+v, want %s", fleet.TrackedInstance, lts.LaunchTemplates, fleet.LaunchTemplateID)
	}
}

func TestSeed_NeedsARegion(t *testing.T) {
	if _, err := Seed(context.Background(), aws.Config{}); err == nil {
		t.Fatal("want an error for a config without a region")
	}
}
