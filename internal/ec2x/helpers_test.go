package ec2x

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestChunks(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	got := Chunks(ids, 2)
	if len(got) != 3 || !slices.Equal(got[2], []string{"e"}) || !slices.Equal(got[0], []string{"a", "b"}) {
		t.Errorf("Chunks = %v", got)
	}
	if Chunks([]string{}, 2) != nil {
		t.Error("Chunks of nothing is not empty")
	}
	// A chunk never writes into the next one.
	got[0] = append(got[0], "x")
	if ids[2] != "c" {
		t.Error("appending to a chunk overwrote the input")
	}
}

func TestForEach_RunsEveryIndexOnceWithBoundedWorkers(t *testing.T) {
	var running, peak, total atomic.Int32
	seen := make([]atomic.Int32, 100)
	ForEach(context.Background(), 100, 4, func(i int) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		seen[i].Add(1)
		total.Add(1)
		running.Add(-1)
	})
	if total.Load() != 100 || peak.Load() > 4 {
		t.Errorf("total %d peak %d", total.Load(), peak.Load())
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Errorf("index %d ran %d times", i, seen[i].Load())
		}
	}
	ForEach(context.Background(), 0, 4, func(int) { t.Error("called for n = 0") })
}

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
