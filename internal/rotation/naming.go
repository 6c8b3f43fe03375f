package rotation

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// rotationIDLayout renders a rotation time to the minute, in UTC, in a form
// that is valid in AMI names and tag values and sorts by time.
const rotationIDLayout = "20060102T1504Z"

// RotationID is the id of the rotation at t: t in UTC to the minute, e.g.
// 20261125T0300Z. Reruns of the same rotation get the same id, and so the
// same AMI names and copy tokens, which is what makes them idempotent.
func RotationID(t time.Time) string {
	return t.UTC().Truncate(time.Minute).Format(rotationIDLayout)
}

// ParseRotationID is the inverse of RotationID.
func ParseRotationID(id string) (time.Time, error) {
	t, ok := parseRotationID(id)
	if !ok {
		return time.Time{}, Invalid("rotation", "%q is not a rotation id; expected UTC time to the minute like 20261125T0300Z", id)
	}
	return t, nil
}

// parseRotationID parses YYYYMMDDTHHMMZ by hand: the retention planner reads
// one per image, and time.Parse would dominate a plan of 100,000 images.
func parseRotationID(id string) (time.Time, bool) {
	if len(id) != len(rotationIDLayout) || id[8] != 'T' || id[13] != 'Z' {
		return time.Time{}, false
	}
	num := func(from, to int) int {
		v := 0
		for i := from; i < to; i++ {
			c := id[i]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day, hour, minute := num(0, 4), num(4, 6), num(6, 8), num(9, 11), num(11, 13)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, 0, 0, time.UTC)
	if t.Day() != day { // February 30th and the like roll over
		return time.Time{}, false
	}
	return t, true
}

// NewRotation returns the rotation at t (truncated to the minute, UTC).
func NewRotation(t time.Time, trigger string, startedAt time.Time) Rotation {
	t = t.UTC().Truncate(time.Minute)
	return Rotation{ID: RotationID(t), Time: t, Trigger: trigger, StartedAt: startedAt.UTC()}
}

// EC2's AMI name rules: 3 to 128 characters of letters, digits and
// ( ) . - / _ (the API model allows a few more, but its error message, and
// so the safe set, is this one).
const (
	MinImageNameLength = 3
	MaxImageNameLength = 128
	// MaxDescriptionLength is EC2's limit for an image description.
	MaxDescriptionLength = 255
)

// ImageName is the AMI name of an instance's image in a rotation:
// amirotate-<policy>-<instance-id>-<rotation>. It is the same in every
// region (names are unique per region only), and it is how a retried
// CreateImage finds the image the first attempt made.
//
// The result always satisfies EC2's rules, whatever the arguments: other
// characters become '-', and a name that would be too long is cut and ends
// in a hash of the full name, so distinct inputs still get distinct names.
// With a valid policy name, instance id and rotation id (at most 77
// characters) neither happens.
func ImageName(policy, instanceID, rotationID string) string {
	name := sanitizeName("amirotate-" + policy + "-" + instanceID + "-" + rotationID)
	if len(name) <= MaxImageNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:16]
	return name[:MaxImageNameLength-len(suffix)] + suffix
}

// ValidImageName reports whether EC2 accepts name as an AMI name.
func ValidImageName(name string) bool {
	if len(name) < MinImageNameLength || len(name) > MaxImageNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("().-/_", c) >= 0
}

// sanitizeName replaces every byte EC2 refuses in a name by '-'. Working on
// bytes (not runes) keeps the result ASCII, so its length is its byte count.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '-'
		}
	}
	return string(b)
}

// Description is the AMI description of a source image.
func Description(policy, instanceID, rotationID string) string {
	return sanitizeDescription("amirotate policy " + policy + ": image of " + instanceID + ", rotation " + rotationID)
}

// CopyDescription is the AMI description of a copy.
func CopyDescription(policy, instanceID, rotationID, sourceImageID, sourceRegion string) string {
	return sanitizeDescription("amirotate policy " + policy + ": image of " + instanceID + ", rotation " + rotationID +
		", copy of " + sourceImageID + " from " + sourceRegion)
}

// sanitizeDescription keeps printable ASCII and EC2's 255-character limit.
func sanitizeDescription(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > MaxDescriptionLength {
		b = b[:MaxDescriptionLength]
	}
	return string(b)
}

// CopyClientToken is the idempotency token of the copy of sourceImageID into
// region during a rotation: a retried CopyImage with the same token returns
// the first copy instead of making a second. It is 42 ASCII characters
// (EC2 allows 64), derived by hash so its length does not depend on the input.
func CopyClientToken(rotationID, sourceImageID, region string) string {
	sum := sha256.Sum256([]byte(rotationID + "\x00" + sourceImageID + "\x00" + region))
	return "amirotate-" + hex.EncodeToString(sum[:16])
}
