package rotation

import (
	"fmt"
	"regexp"
)

// What proves that amirotate made an image or a snapshot. Anyone allowed
// ec2:CreateTags can write amirotate's tags onto anything, so a tag alone
// proves nothing. What only amirotate's own calls produce, and nobody can
// change afterwards, is:
//   - an image's name: amirotate names each image exactly ImageName(policy,
//     instance, rotation), and EC2 has no call that renames an image;
//   - a snapshot's description: EC2 writes it when CreateImage or CopyImage
//     makes the snapshot ("Created by CreateImage(i-…) for ami-…", "Copied
//     for DestinationAmi ami-… from SourceAmi ami-… …"), and no call
//     changes it.
//
// An image is this policy's when it is owned by this account (every listing
// asks Owners=self), carries the four amirotate tags of the policy, and its
// name is exactly the one those tags give. A tag forged onto a foreign image
// names an instance and rotation whose image name the foreign image does
// not have; a tag changed on one of ours (another instance, another
// rotation) no longer agrees with its name. Either way the image is not
// provably ours and amirotate neither deletes, shares, deprecates, marks
// nor publishes it.

// Unproven says why img is not provably an image policy made, or "" when it
// is. img must come from a listing of this account's own images.
func Unproven(img Image, policy string) string {
	t := img.Tags
	switch {
	case t[TagCreatedBy] != CreatedBy:
		return "no " + TagCreatedBy + "=" + CreatedBy + " tag"
	case t[TagPolicy] != policy:
		return fmt.Sprintf("tagged for policy %q, not %q", t[TagPolicy], policy)
	case !ValidInstanceID(t[TagInstanceID]):
		return fmt.Sprintf("%s tag %q is not an instance id", TagInstanceID, t[TagInstanceID])
	}
	if _, ok := parseRotationID(t[TagRotation]); !ok {
		return fmt.Sprintf("%s tag %q is not a rotation id", TagRotation, t[TagRotation])
	}
	if want := ImageName(policy, t[TagInstanceID], t[TagRotation]); img.Name != want {
		return fmt.Sprintf("its name %q is not %q, the name its tags give (tags can be written by anyone; names cannot be changed)", img.Name, want)
	}
	if IsCopy(t) && t[TagSourceRegion] == "" {
		return "a copy without its " + TagSourceRegion + " tag"
	}
	return ""
}

// Proven reports whether img is provably an image of policy made for
// instanceID in rotation rotationID.
func Proven(img Image, policy, instanceID, rotationID string) bool {
	return Unproven(img, policy) == "" && img.Tags[TagInstanceID] == instanceID && img.Tags[TagRotation] == rotationID
}

var (
	createdDescription = regexp.MustCompile(`^Created by CreateImage\((i-[0-9a-f]+)\) for (ami-[0-9a-f]+)`)
	copiedDescription  = regexp.MustCompile(`^Copied for DestinationAmi (ami-[0-9a-f]+) from SourceAmi (ami-[0-9a-f]+) `)
)

// SnapshotUnproven says why a snapshot is not provably one that amirotate's
// CreateImage or CopyImage made for policy, or "" when it is: it carries the
// policy's amirotate tags, and the description EC2 wrote names the same
// instance (CreateImage) or the same source image (CopyImage) as its tags.
// It returns the image the description names, which the caller checks is
// gone (or amirotate's) before deleting.
func SnapshotUnproven(description string, tags map[string]string, policy string) (imageID, why string) {
	if tags[TagCreatedBy] != CreatedBy || tags[TagPolicy] != policy {
		return "", "not tagged as policy " + policy + "'s"
	}
	if m := createdDescription.FindStringSubmatch(description); m != nil {
		if m[1] != tags[TagInstanceID] || IsCopy(tags) {
			return "", fmt.Sprintf("its description names CreateImage of %s, its tags instance %s", m[1], tags[TagInstanceID])
		}
		return m[2], ""
	}
	if m := copiedDescription.FindStringSubmatch(description); m != nil {
		if m[2] != tags[TagSourceImage] {
			return "", fmt.Sprintf("its description names a copy of %s, its tags %q", m[2], tags[TagSourceImage])
		}
		return m[1], ""
	}
	return "", "its description is not one EC2 writes for CreateImage or CopyImage"
}
