package rotation

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
)

// Verify boots each new image before anything publishes it: a test
// instance launched from the image in the home region must reach running
// with both EC2 status checks ok, and, when Probe is set, run the probe (an
// SSM Run Command document) successfully. The test instance is always
// terminated. An image that fails is marked, never shared, published or
// marked latest, and its instance's rotation fails.
type Verify struct {
	InstanceType     string   `json:"instanceType,omitempty"` // default t3.micro
	SubnetID         string   `json:"subnetId"`
	SecurityGroupIDs []string `json:"securityGroupIds"`
	// InstanceProfile is the name of the test instance's instance profile;
	// a probe needs one that makes it an SSM managed node. Its role must
	// have the profile's name (IAM grants iam:PassRole on that role only).
	InstanceProfile string `json:"instanceProfile,omitempty"`
	// UserData is the test instance's user data (plain text; amirotate
	// encodes it).
	UserData       string `json:"userData,omitempty"`
	TimeoutMinutes int    `json:"timeoutMinutes,omitempty"` // default 15
	Probe          *Probe `json:"probe,omitempty"`
}

// Probe is an SSM Run Command health check: success is the command
// succeeding on the test instance.
type Probe struct {
	Document   string              `json:"document"`
	Parameters map[string][]string `json:"parameters,omitempty"`
}

// Bounds and defaults of Verify.
const (
	DefaultVerifyInstanceType   = "t3.micro"
	DefaultVerifyTimeoutMinutes = 15
	MaxVerifyTimeoutMinutes     = 240
	// MaxUserData is EC2's limit on user data (16 KB before base64).
	MaxUserData           = 16 * 1024
	MaxVerifySecurityGrps = 5
)

var (
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.[a-z0-9]+$`)
	subnetIDRE     = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	groupIDRE      = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
	profileNameRE  = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	documentNameRE = regexp.MustCompile(`^[a-zA-Z0-9_\-.]{3,128}$`)
)

func checkVerify(ps *problems, field string, v *Verify) {
	if v == nil {
		return
	}
	if !instanceTypeRE.MatchString(v.InstanceType) {
		ps.add(field+".instanceType", "%q is not an instance type; use one like t3.micro or m7g.large", v.InstanceType)
	}
	if !subnetIDRE.MatchString(v.SubnetID) {
		if v.SubnetID == "" {
			ps.add(field+".subnetId", "is missing; name the subnet the test instances launch in (subnet- and 8 or 17 hex digits)")
		} else {
			ps.add(field+".subnetId", "%q is not a subnet id (subnet- and 8 or 17 hex digits)", v.SubnetID)
		}
	}
	if len(v.SecurityGroupIDs) == 0 {
		ps.add(field+".securityGroupIds", "is empty; list the security groups of the test instances (the role may use only these)")
	}
	if len(v.SecurityGroupIDs) > MaxVerifySecurityGrps {
		ps.add(field+".securityGroupIds", "lists %d groups; EC2 takes at most %d per network interface", len(v.SecurityGroupIDs), MaxVerifySecurityGrps)
	}
	seen := map[string]bool{}
	for i, g := range v.SecurityGroupIDs {
		f := fmt.Sprintf("%s.securityGroupIds[%d]", field, i)
		switch {
		case !groupIDRE.MatchString(g):
			ps.add(f, "%q is not a security group id (sg- and 8 or 17 hex digits)", g)
		case seen[g]:
			ps.add(f, "%q is listed twice", g)
		}
		seen[g] = true
	}
	if v.InstanceProfile != "" && !profileNameRE.MatchString(v.InstanceProfile) {
		ps.add(field+".instanceProfile", "%q is not an instance profile name (1-128 letters, digits and +=,.@_-; the name, not the ARN)", v.InstanceProfile)
	}
	if len(v.UserData) > MaxUserData {
		ps.add(field+".userData", "has %d bytes; EC2 takes at most %d", len(v.UserData), MaxUserData)
	}
	if v.TimeoutMinutes < 1 || v.TimeoutMinutes > MaxVerifyTimeoutMinutes {
		ps.add(field+".timeoutMinutes", "is %d; set 1 to %d", v.TimeoutMinutes, MaxVerifyTimeoutMinutes)
	}
	if p := v.Probe; p != nil {
		if !documentNameRE.MatchString(p.Document) {
			ps.add(field+".probe.document", "%q is not an SSM document name (3-128 letters, digits, _ - .), e.g. AWS-RunShellScript", p.Document)
		}
		if v.InstanceProfile == "" {
			ps.add(field+".probe", "needs instanceProfile: Run Command reaches only managed nodes, which need an instance profile (e.g. with AmazonSSMManagedInstanceCore)")
		}
		for _, k := range slices.Sorted(maps.Keys(p.Parameters)) {
			if k == "" {
				ps.add(field+".probe.parameters", "has an empty parameter name")
			}
		}
	}
}

// WithVerifyDefaults fills in Verify's defaults (a copy).
func withVerifyDefaults(v *Verify) *Verify {
	if v == nil {
		return nil
	}
	c := *v
	if c.InstanceType == "" {
		c.InstanceType = DefaultVerifyInstanceType
	}
	if c.TimeoutMinutes == 0 {
		c.TimeoutMinutes = DefaultVerifyTimeoutMinutes
	}
	return &c
}
