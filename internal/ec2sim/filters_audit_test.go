package ec2sim_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
)

// TestAuditDescribeImages_BlockDeviceMappingSnapshotIDFilter drives the
// DescribeImages filter block-device-mapping.snapshot-id (which the
// retention orphan sweep relies on) through the unmodified SDK: an image is
// listed exactly when one of its block devices uses a named snapshot.
func TestAuditDescribeImages_BlockDeviceMappingSnapshotIDFilter(t *testing.T) {
	start := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	clock := ec2sim.NewManualClock(start)
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1"}, Clock: clock, ImageDelay: time.Minute, Seed: 3})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client := ec2.NewFromConfig(ec2sim.AWSConfig(srv.URL, "us-east-1"))
	ctx := context.Background()

	// Two instances with two volumes each: two images, four snapshots.
	images := map[string][]string{} // image → its snapshots
	var order []string
	for i, name := range []string{"audit-a", "audit-b"} {
		id, err := sim.RunInstance("us-east-1", ec2sim.InstanceSpec{Tags: map[string]string{"Name": name}, Volumes: []int{8, 20 + i}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := client.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(id), Name: aws.String(name), NoReboot: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		img := aws.ToString(out.ImageId)
		d, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{img}})
		if err != nil || len(d.Images) != 1 {
			t.Fatalf("DescribeImages %s: %v %v", img, err, d)
		}
		for _, bdm := range d.Images[0].BlockDeviceMappings {
			if bdm.Ebs != nil && bdm.Ebs.SnapshotId != nil {
				images[img] = append(images[img], aws.ToString(bdm.Ebs.SnapshotId))
			}
		}
		if len(images[img]) != 2 {
			t.Fatalf("image %s has snapshots %v, want 2", img, images[img])
		}
		order = append(order, img)
	}
	a, b := order[0], order[1]

	byFilter := func(values ...string) []string {
		t.Helper()
		var ids []string
		p := ec2.NewDescribeImagesPaginator(client, &ec2.DescribeImagesInput{
			Owners:  []string{"self"},
			Filters: []types.Filter{{Name: aws.String("block-device-mapping.snapshot-id"), Values: values}},
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, img := range page.Images {
				ids = append(ids, aws.ToString(img.ImageId))
			}
		}
		sort.Strings(ids)
		return ids
	}
	both := []string{a, b}
	sort.Strings(both)
	for _, tc := range []struct {
		name   string
		values []string
		want   []string
	}{
		{"root snapshot of a", []string{images[a][0]}, []string{a}},
		{"data snapshot of a", []string{images[a][1]}, []string{a}},
		{"a snapshot of each", []string{images[a][1], images[b][0]}, both},
		{"both snapshots of b", images[b], []string{b}},
		{"unknown snapshot", []string{"snap-0123456789abcdef0"}, nil},
	} {
		if got := byFilter(tc.values...); !slices.Equal(got, tc.want) {
			t.Errorf("%s: filter %v lists %v, want %v", tc.name, tc.values, got, tc.want)
		}
	}

	// Once a is deregistered (keeping its snapshots), its snapshots name no
	// image any more: what the orphan sweep looks for.
	if _, err := client.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	if got := byFilter(images[a]...); len(got) != 0 {
		t.Errorf("after deregistering %s its snapshots still list %v", a, got)
	}
	if got := byFilter(append(slices.Clone(images[a]), images[b][1])...); !slices.Equal(got, []string{b}) {
		t.Errorf("mixed filter after deregistration lists %v, want [%s]", got, b)
	}
}
