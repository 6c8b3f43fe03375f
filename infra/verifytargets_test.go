package infra

import (
	"slices"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Each list of the verify grants stands on its own: a probe document named
// like an instance profile is still granted.
func TestVerifyTargets_EachListOnItsOwn(t *testing.T) {
	verify := func(subnet, profile, document string) PolicySchedule {
		return PolicySchedule{Policy: rotation.Policy{Verify: &rotation.Verify{SubnetID: subnet, SecurityGroupIDs: []string{"sg-0123456789abcdef0"},
			InstanceProfile: profile, Probe: &rotation.Probe{Document: document}}}}
	}
	subnets, groups, profiles, documents := verifyTargets([]PolicySchedule{
		verify("subnet-0123456789abcdef0", "AmirotateProbe", "AmirotateProbe"),
		verify("subnet-0123456789abcdef0", "web", "AmirotateProbe"),
		{Policy: rotation.Policy{}},
	})
	if !slices.Equal(subnets, []string{"subnet-0123456789abcdef0"}) || !slices.Equal(groups, []string{"sg-0123456789abcdef0"}) ||
		!slices.Equal(profiles, []string{"AmirotateProbe", "web"}) || !slices.Equal(documents, []string{"AmirotateProbe"}) {
		t.Errorf("subnets %v groups %v profiles %v documents %v", subnets, groups, profiles, documents)
	}
}
