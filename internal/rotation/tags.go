package rotation

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Tag keys. The first group is written by amirotate onto every image and
// snapshot it makes; retention only ever considers images that carry all of
// TagCreatedBy, TagPolicy, TagInstanceID and TagRotation.
const (
	TagPolicy     = "amirotate:policy"
	TagInstanceID = "amirotate:instance-id"
	TagRotation   = "amirotate:rotation"
	TagCreatedBy  = "amirotate:created-by"
	// TagSourceImage and TagSourceRegion mark a copy and say where it came from.
	TagSourceImage  = "amirotate:source-image"
	TagSourceRegion = "amirotate:source-region"
	// TagLatest = "true" marks the newest image of an instance in a region.
	TagLatest = "amirotate:latest"
	// TagTrigger = "tag-change" marks a rebuild's image: retention ranks
	// rebuilds apart (rebuild.keep), so they never evict scheduled images.
	TagTrigger = "amirotate:trigger"
	// TagVerifies = <image id> marks a test instance amirotate launched to
	// verify that image; TagVerification = "failed" marks an image that
	// failed verification.
	TagVerifies     = "amirotate:verifies"
	TagVerification = "amirotate:verification"
	// VerificationFailed is TagVerification's value on a rejected image.
	VerificationFailed = "failed"

	// Tags users write. TagKeep on an image (any value but "false") means
	// never delete it; TagTrack on a launch template names the instance whose
	// newest image it should launch; changing TagRebuild on an instance
	// starts a rotation of that instance.
	TagKeep    = "amirotate:keep"
	TagTrack   = "amirotate:track"
	TagRebuild = "amirotate:rebuild"

	// TagRolledBack marks an image rolled back from: `amirotate rollback`
	// writes it, with the rotation rolled back to as its value, onto the
	// instance's images newer than that rotation; `rollback --clear` lifts
	// it. While it stands, no rotation publishes the image or marks it
	// latest again, and retention keeps it and, on a provable image, the
	// rollback target its value names. Anyone can write a tag, so the mark
	// only ever makes amirotate publish less or keep more: it never makes
	// anything deleted, shared or published.
	TagRolledBack = "amirotate:rolled-back"

	// CreatedBy is the value of TagCreatedBy.
	CreatedBy = "amirotate"
	// LatestValue is the value of TagLatest.
	LatestValue = "true"
	// TagPrefix is the prefix of every amirotate tag key.
	TagPrefix = "amirotate:"
)

// ImageTags are the tags of a new image and its snapshots: the instance tags
// the policy copies, then the policy's tags, then amirotate's own, each
// overriding the one before, so amirotate's tags are always right.
//
// Instance tag values are copied as they are: EC2 limits instance tags
// exactly as image tags (128-character keys, 256-character values), so a
// copied tag always fits. Keys under aws: or amirotate: are never copied
// (EC2 refuses the first; the second would forge amirotate's own tags).
func ImageTags(p Policy, rot Rotation, instanceID string, instanceTags map[string]string) map[string]string {
	tags := make(map[string]string, len(p.CopyInstanceTags)+len(p.Tags)+4)
	for _, k := range p.CopyInstanceTags {
		if v, ok := instanceTags[k]; ok && !reservedKey(k) {
			tags[k] = v
		}
	}
	for k, v := range p.Tags {
		if !reservedKey(k) {
			tags[k] = v
		}
	}
	tags[TagPolicy] = p.Name
	tags[TagInstanceID] = instanceID
	tags[TagRotation] = rot.ID
	tags[TagCreatedBy] = CreatedBy
	if rot.Trigger == TriggerTagChange {
		tags[TagTrigger] = TriggerTagChange
	}
	return tags
}

// IsRebuild reports whether tags mark a rebuild's image.
func IsRebuild(tags map[string]string) bool {
	return tags[TagTrigger] == TriggerTagChange
}

// CopyTags are the tags of a copy of sourceImageID (made in sourceRegion)
// and of its snapshots: the source's tags plus where it came from.
func CopyTags(p Policy, rot Rotation, instanceID string, instanceTags map[string]string, sourceImageID, sourceRegion string) map[string]string {
	tags := ImageTags(p, rot, instanceID, instanceTags)
	tags[TagSourceImage] = sourceImageID
	tags[TagSourceRegion] = sourceRegion
	return tags
}

func reservedKey(k string) bool {
	lower := strings.ToLower(k)
	return strings.HasPrefix(lower, "aws:") || strings.HasPrefix(lower, TagPrefix)
}

// CheckTags reports whether EC2 accepts tags on one resource: at most 50
// (aws: keys do not count, but may not be written either), keys of 1-128
// and values of at most 256 characters.
func CheckTags(tags map[string]string) error {
	var ps problems
	count := 0
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		field := fmt.Sprintf("tags[%q]", k)
		switch n := utf8.RuneCountInString(k); {
		case n == 0:
			ps.add(field, "tag key is empty")
		case n > MaxTagKeyLength:
			ps.add(field, "tag key has %d characters; EC2 allows %d", n, MaxTagKeyLength)
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			ps.add(field, "keys starting with aws: cannot be written")
		} else {
			count++
		}
		if n := utf8.RuneCountInString(tags[k]); n > MaxTagValueLength {
			ps.add(field, "value has %d characters; EC2 allows %d", n, MaxTagValueLength)
		}
	}
	if count > MaxTags {
		ps.add("tags", "%d tags; EC2 allows %d per resource", count, MaxTags)
	}
	return ps.err()
}

// Managed reports whether tags mark an image amirotate made: created-by
// amirotate and a policy, instance and rotation. Whatever its name, an image
// without all four is not ours and is never deleted.
func Managed(tags map[string]string) bool {
	return tags[TagCreatedBy] == CreatedBy && tags[TagPolicy] != "" &&
		tags[TagInstanceID] != "" && tags[TagRotation] != ""
}

// KeepTagged reports whether a user marked the image to be kept: any
// amirotate:keep value except "false" (a tag someone set to "no" or "" is
// still read as a wish to keep; only an explicit "false" is not).
func KeepTagged(tags map[string]string) bool {
	v, ok := tags[TagKeep]
	return ok && !strings.EqualFold(strings.TrimSpace(v), "false")
}

// Rejected tells an image marked as having failed its verification.
func Rejected(tags map[string]string) bool {
	return tags[TagVerification] == VerificationFailed
}

// RolledBack reports whether tags mark an image rolled back from, whatever
// the mark's value: a mark with a value nobody can read still says "do not
// publish this again".
func RolledBack(tags map[string]string) bool {
	_, ok := tags[TagRolledBack]
	return ok
}

// RollbackTarget returns the rotation a rolled-back mark names, if its value
// is one.
func RollbackTarget(tags map[string]string) (string, bool) {
	v, ok := tags[TagRolledBack]
	if !ok {
		return "", false
	}
	_, valid := parseRotationID(v)
	return v, valid
}

// IsCopy reports whether tags mark a copy made by CopyImage.
func IsCopy(tags map[string]string) bool {
	return tags[TagSourceImage] != ""
}

// AnyValue as a selector value matches any value of the tag.
const AnyValue = "*"

// Matches reports whether an instance with tags is selected: every selector
// tag is present, with the same value or any value for "*". An empty
// selector matches nothing (WithDefaults never leaves it empty).
func (s Selector) Matches(tags map[string]string) bool {
	if len(s.Tags) == 0 {
		return false
	}
	for k, want := range s.Tags {
		got, ok := tags[k]
		if !ok || (want != AnyValue && got != want) {
			return false
		}
	}
	return true
}

// Filter is an EC2 Describe* filter as plain data, for the adapters to
// convert into SDK types.
type Filter struct {
	Name   string
	Values []string
}

// Filters returns the EC2 filters that select the same instances as
// Matches, one "tag:<key>" filter per selector tag, sorted by key. EC2 reads
// * and ? in filter values as wildcards: "*" is passed as the wildcard that
// matches any value; in other values they are escaped, because a selector
// means them literally.
func (s Selector) Filters() []Filter {
	keys := slices.Sorted(maps.Keys(s.Tags))
	filters := make([]Filter, 0, len(keys))
	for _, k := range keys {
		v := s.Tags[k]
		if v != AnyValue {
			v = escapeFilterValue(v)
		}
		filters = append(filters, Filter{Name: "tag:" + k, Values: []string{v}})
	}
	return filters
}

var filterEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`)

func escapeFilterValue(v string) string { return filterEscaper.Replace(v) }
