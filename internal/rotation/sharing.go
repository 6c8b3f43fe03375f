package rotation

import (
	"regexp"
	"slices"
	"strings"
)

// Sharing across accounts. A policy's shareWith lists account ids,
// Organization ARNs and organizational unit (OU) ARNs; "all" (public) only
// with allowPublic.

// PublicShare is the shareWith entry that makes images public.
const PublicShare = "all"

// Bounds of the sharing settings.
const (
	// DefaultShareGraceDays: EC2's usage reports may miss instance activity
	// of the last 24 hours and launch template activity of the last few
	// days (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html),
	// so a report only proves an image unused once sharing stopped this long
	// before it was made.
	DefaultShareGraceDays = 7
	MinShareGraceDays     = 3
	MaxShareGraceDays     = 365
	// MaxDeprecateBeforeDelete bounds deprecateBeforeDeleteDays.
	MaxDeprecateBeforeDelete = 365
)

// ShareGrace is how long, in days, sharing must have stopped before a
// usage report may prove an image unused (the policy's value or the default).
func (p Policy) ShareGrace() int {
	if p.ShareGraceDays == 0 {
		return DefaultShareGraceDays
	}
	return p.ShareGraceDays
}

// The ARN shapes EC2 accepts in a launch permission, as the EC2 Image
// Builder API documents them for the same ModifyImageAttribute request
// (https://docs.aws.amazon.com/imagebuilder/latest/APIReference/API_LaunchPermissionConfiguration.html).
var (
	organizationARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}$`)
	ouARNRE           = regexp.MustCompile(`^arn:aws[a-z-]*:organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$`)
)

// ShareTargets are a policy's shareWith entries by kind, each sorted.
type ShareTargets struct {
	Accounts      []string
	Organizations []string
	OUs           []string
	Public        bool
}

// Empty reports whether nothing is shared.
func (t ShareTargets) Empty() bool {
	return len(t.Accounts) == 0 && len(t.Organizations) == 0 && len(t.OUs) == 0 && !t.Public
}

// Shares returns the policy's share targets by kind. Entries that are
// none of the kinds (a policy that did not validate) are left out.
func (p Policy) Shares() ShareTargets {
	var t ShareTargets
	for _, s := range p.ShareWith {
		switch shareKind(s) {
		case "public":
			t.Public = true
		case "account":
			t.Accounts = append(t.Accounts, s)
		case "organization":
			t.Organizations = append(t.Organizations, s)
		case "ou":
			t.OUs = append(t.OUs, s)
		}
	}
	slices.Sort(t.Accounts)
	slices.Sort(t.Organizations)
	slices.Sort(t.OUs)
	return t
}

func shareKind(s string) string {
	switch {
	case s == PublicShare:
		return "public"
	case accountRE.MatchString(s):
		return "account"
	case organizationARNRE.MatchString(s):
		return "organization"
	case ouARNRE.MatchString(s):
		return "ou"
	}
	return ""
}

func checkShare(ps *problems, field, s string, allowPublic bool) {
	switch shareKind(s) {
	case "public":
		if !allowPublic {
			ps.add(field, `"all" makes the images public; set allowPublic: true if that is really meant, or list account ids, organization or OU ARNs`)
		}
	case "account", "organization", "ou":
	default:
		switch {
		case strings.HasPrefix(s, "arn:") && strings.Contains(s, ":organization/"):
			ps.add(field, "%q is not an organization ARN; use arn:aws:organizations::<management account id>:organization/o-<10-32 lowercase letters or digits>", s)
		case strings.HasPrefix(s, "arn:") && strings.Contains(s, ":ou/"):
			ps.add(field, "%q is not an OU ARN; use arn:aws:organizations::<management account id>:ou/o-<org id>/ou-<root id>-<ou id>", s)
		case strings.HasPrefix(s, "arn:"):
			ps.add(field, "%q: images are shared with accounts, organizations and OUs only; use an organization or OU ARN (arn:aws:organizations::...)", s)
		case strings.HasPrefix(s, "ou-"):
			ps.add(field, "%q: name an OU by its ARN, arn:aws:organizations::<management account id>:ou/o-<org id>/%s", s, s)
		case strings.HasPrefix(s, "o-"):
			ps.add(field, "%q: name an organization by its ARN, arn:aws:organizations::<management account id>:organization/%s", s, s)
		default:
			ps.add(field, "%q is not an AWS account id, organization ARN or OU ARN; use 12 digits, e.g. \"111122223333\", or an ARN", s)
		}
	}
}

// awsManagedEBSKey reports whether a kmsKeyId names the AWS managed key
// for EBS (alias/aws/ebs, or its alias ARN): another account cannot be
// given use of it, so images encrypted with it cannot be shared
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-explicit.html).
func awsManagedEBSKey(key string) bool {
	return key == "alias/aws/ebs" || strings.HasPrefix(key, "arn:") && strings.HasSuffix(key, ":alias/aws/ebs")
}
