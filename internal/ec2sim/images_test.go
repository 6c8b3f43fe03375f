package ec2sim

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestCreateImage_PendingThenAvailable(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	id := e.runInstance(t, "us-east-1", map[string]string{"Name": "web"}, 100)
	out, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId: aws.String(id), Name: aws.String("amirotate-nightly-" + id + "-20261125T0300Z"), NoReboot: aws.Bool(true),
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeImage, Tags: []ec2types.Tag{{Key: aws.String("amirotate:policy"), Value: aws.String("nightly")}}},
			{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("amirotate:policy"), Value: aws.String("nightly")}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	img := e.image(t, "us-east-1", *out.ImageId)
	if img.State != ec2types.ImageStatePending {
		t.Fatalf("state = %s, want pending", img.State)
	}
	if len(img.BlockDeviceMappings) != 2 || *img.CreationDate != "2026-11-25T03:00:00.000Z" || *img.SourceInstanceId != id {
		t.Fatalf("unexpected image %+v", img)
	}
	if img.Tags[0].Key == nil || *img.Tags[0].Key != "amirotate:policy" {
		t.Fatalf("tags = %+v", img.Tags)
	}
	// 108 GiB: one minute plus one more for the extra 100 GiB.
	e.clock.Advance(time.Minute + 59*time.Second)
	if st := e.image(t, "us-east-1", *out.ImageId).State; st != ec2types.ImageStatePending {
		t.Fatalf("state after 1m59s = %s, want pending", st)
	}
	e.clock.Advance(time.Second)
	if st := e.image(t, "us-east-1", *out.ImageId).State; st != ec2types.ImageStateAvailable {
		t.Fatalf("state after 2m = %s, want available", st)
	}
	snaps, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:amirotate:policy"), Values: []string{"nightly"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps.Snapshots) != 2 || snaps.Snapshots[0].State != ec2types.SnapshotStateCompleted {
		t.Fatalf("snapshots = %+v", snaps.Snapshots)
	}
}
