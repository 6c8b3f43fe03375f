package ec2x

import (
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/rotation"
)

// MaxFilterValues is how many values one Describe* filter takes; lists of
// ids are chunked to it.
const MaxFilterValues = 200

// MaxTagResources is how many resources one CreateTags/DeleteTags takes.
const MaxTagResources = 1000

// Tags converts a tag map into EC2 tags, sorted by key (stable requests).
func Tags(m map[string]string) []types.Tag {
	out := make([]types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// TagMap converts EC2 tags into a map.
func TagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// TagSpecs tags each resource type with the same tags.
func TagSpecs(m map[string]string, resources ...types.ResourceType) []types.TagSpecification {
	out := make([]types.TagSpecification, 0, len(resources))
	for _, r := range resources {
		out = append(out, types.TagSpecification{ResourceType: r, Tags: Tags(m)})
	}
	return out
}

// Filter builds one EC2 filter.
func Filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

// Filters converts the domain's filters.
func Filters(fs []rotation.Filter) []types.Filter {
	out := make([]types.Filter, 0, len(fs))
	for _, f := range fs {
		out = append(out, Filter(f.Name, f.Values...))
	}
	return out
}

// SnapshotIDs returns the EBS snapshot ids of an image's block devices,
// sorted.
func SnapshotIDs(img types.Image) []string {
	var ids []string
	for _, bdm := range img.BlockDeviceMappings {
		if bdm.Ebs != nil && aws.ToString(bdm.Ebs.SnapshotId) != "" {
			ids = append(ids, aws.ToString(bdm.Ebs.SnapshotId))
		}
	}
	slices.Sort(ids)
	return ids
}

// Workers is how many calls a handler keeps in flight: enough to hide
// latency, few enough not to empty EC2's mutating-call token buckets (5/s
// refill) in one burst.
const Workers = 8
