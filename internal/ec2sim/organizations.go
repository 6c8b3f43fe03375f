package ec2sim

import (
	"regexp"
	"strings"
)

// Sharing with AWS Organizations: an image's launch permissions may name an
// organization or an organizational unit (OU), and every account in it (for
// an OU, in it or in an OU nested below it) may then launch the image
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/share-amis-with-organizations-and-OUs.html).
// Snapshots have no such permission: ModifySnapshotAttribute takes account
// ids and "all" only, and launching a shared image needs no access to its
// snapshots (the KMS key of encrypted ones must be shared instead).
//
// Launch permissions keep organizations and OUs in the image's launchUsers
// set with these prefixes.
const (
	permOrg = "org:"
	permOU  = "ou:"
)

// The ARN shapes ModifyImageAttribute accepts (as documented for the same
// field in EC2 Image Builder's LaunchPermissionConfiguration).
var (
	reOrgARN = regexp.MustCompile(`^arn:aws[a-z-]*:organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}$`)
	reOUARN  = regexp.MustCompile(`^arn:aws[a-z-]*:organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$`)
)

func checkOrgPermission(v string) *apiError {
	if arn, ok := strings.CutPrefix(v, permOrg); ok && !reOrgARN.MatchString(arn) {
		return errInvalidValue("Value (%s) for parameter organizationArn is invalid. Expected: 'arn:aws:organizations::<account>:organization/o-<id>'.", arn)
	}
	if arn, ok := strings.CutPrefix(v, permOU); ok && !reOUARN.MatchString(arn) {
		return errInvalidValue("Value (%s) for parameter organizationalUnitArn is invalid. Expected: 'arn:aws:organizations::<account>:ou/o-<id>/ou-<id>'.", arn)
	}
	return nil
}

// JoinOrganization places a (consumer) account in an organization and in
// the OUs on the path from the root to it (outermost first): the account
// may launch images shared with any of them.
func (s *Sim) JoinOrganization(account, orgARN string, ouPath ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members == nil {
		s.members = map[string][]string{}
	}
	m := []string{permOrg + orgARN}
	for _, ou := range ouPath {
		m = append(m, permOU+ou)
	}
	s.members[account] = m
}

// launchableBy reports whether account may launch img: it owns it, the
// image is public, or a launch permission names the account, its
// organization or one of its OUs.
func (s *Sim) launchableBy(img *image, account string) bool {
	if img.visibleTo(account) {
		return true
	}
	for _, m := range s.members[account] {
		if img.launchUsers[m] {
			return true
		}
	}
	return false
}
