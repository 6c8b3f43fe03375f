package rotation

import (
	"math/rand/v2"
	"testing"
)

var rejected = withTag(TagVerification, VerificationFailed)

// TestPlan_RejectedImageTakesNoSlot: with keep 1, an image that failed its
// verification must not count as the newest, or the last verified image
// would be deleted. The rejected image itself stays for a person to look at.
func TestPlan_RejectedImageTakesNoSlot(t *testing.T) {
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-bad", "us-east-1", "i-0000000a", 1, rejected),
		image("ami-bad-eu", "eu-west-1", "i-0000000a", 1, asCopy, rejected),
		image("ami-good", "us-east-1", "i-0000000a", 2),
		image("ami-good-eu", "eu-west-1", "i-0000000a", 2, asCopy),
		image("ami-old", "us-east-1", "i-0000000a", 3),
		// A value other than "failed" is no verdict.
		image("ami-b", "us-east-1", "i-0000000b", 1, withTag(TagVerification, "passed")),
		image("ami-b-old", "us-east-1", "i-0000000b", 2),
	}})
	expect(t, got, map[string]string{
		"ami-bad":     ReasonRejected,
		"ami-bad-eu":  ReasonRejected,
		"ami-good":    ReasonNewest,
		"ami-good-eu": ReasonNewest,
		"ami-old":     ReasonExpired,
		"ami-b":       ReasonNewest,
		"ami-b-old":   ReasonExpired,
	})
}

// TestPlan_VerificationMarksOnlyEverKeepMore forges the rejected mark onto
// random images of random inventories (the newest included): no image kept
// before is deleted after.
func TestPlan_VerificationMarksOnlyEverKeepMore(t *testing.T) {
	marksOnlyEverKeepMore(t, rand.New(rand.NewPCG(14, 7)), func(_ *rand.Rand, img Image, _ []Image) {
		img.Tags[TagVerification] = VerificationFailed
	})
}

// TestPlan_RejectedImageKeptForAnotherReasonStillTakesNoSlot: a keep tag or
// a rolled-back mark put on an image that failed verification (to look into
// it) keeps it, and must still not push the last verified image out.
func TestPlan_RejectedImageKeptForAnotherReasonStillTakesNoSlot(t *testing.T) {
	for reason, also := range map[string]func(*Image){
		ReasonKeepTag:    withTag(TagKeep, "investigate"),
		ReasonRolledBack: withTag(TagRolledBack, "x"),
		ReasonProtected:  func(i *Image) { i.DeregistrationProtected = true },
	} {
		got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
			image("ami-bad", "us-east-1", "i-0000000a", 1, rejected, also),
			image("ami-good", "us-east-1", "i-0000000a", 2),
			image("ami-old", "us-east-1", "i-0000000a", 3),
		}})
		t.Run(reason, func(t *testing.T) {
			expect(t, got, map[string]string{"ami-bad": reason, "ami-good": ReasonNewest, "ami-old": ReasonExpired})
		})
	}
}
