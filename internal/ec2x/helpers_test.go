package ec2x

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestTagsAndSnapshotIDs(t *testing.T) {
	tags := Tags(map[string]string{"b": "2", "a": "1"})
	if aws.ToString(tags[0].Key) != "a" || aws.ToString(tags[1].Value) != "2" {
		t.Errorf("Tags not sorted: %+v", tags)
	}
	if m := TagMap(tags); m["a"] != "1" || len(m) != 2 {
		t.Errorf("TagMap = %v", m)
	}
	img := types.Image{BlockDeviceMappings: []types.BlockDeviceMapping{
		{Ebs: &types.EbsBlockDevice{SnapshotId: aws.String("snap-2")}},
		{VirtualName: aws.String("ephemeral0")},
		{Ebs: &types.EbsBlockDevice{SnapshotId: aws.String("snap-1")}},
	}}
	if got := SnapshotIDs(img); !slices.Equal(got, []string{"snap-1", "snap-2"}) {
		t.Errorf("SnapshotIDs = %v", got)
	}
}
