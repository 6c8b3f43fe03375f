package rotation

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Defaults and bounds of a policy. The bounds catch typos (a timeout of
// 2400 hours) and keep a rotation inside what EC2 and Step Functions accept.
const (
	// DefaultBatchSize is the most instances one Map iteration rotates.
	DefaultBatchSize = 100
	// MaxBatchSize bounds a batch because the batch's state (its image
	// records, publications and retention reports) travels through Step
	// Functions, which caps a payload at 256 KiB.
	MaxBatchSize = 100
	// MaxImagesPerBatch bounds instances × (1 + copy regions) per batch for
	// the same reason: each image costs ~600 bytes of state at the end of a
	// batch (its record, its publication, its retention report; measured by
	// `amirotate bench`), so 300 images stay near 180 KiB.
	MaxImagesPerBatch = 300

	DefaultPollIntervalSeconds = 60
	MinPollIntervalSeconds     = 1
	MaxPollIntervalSeconds     = 3600

	DefaultTimeoutMinutes = 240
	MinTimeoutMinutes     = 1
	// MaxTimeoutMinutes: EC2 says an image may take up to 24 hours, and
	// time-based copies up to 48.
	MaxTimeoutMinutes = 48 * 60

	// DefaultMaxDeletionsPerInstance lets a night delete the expired image
	// of an instance and region, and two more after missed nights.
	DefaultMaxDeletionsPerInstance = 3
	DefaultRebuildCooldownMinutes  = 60
	DefaultRebuildKeep             = 2
	MaxRebuildCooldownMinutes      = 7 * 24 * 60

	MaxKeep       = 1000
	MaxAgeDays    = 3650
	MaxDeprecate  = 3650 // EC2 refuses a deprecation time more than 10 years ahead
	MaxPolicyName = 32

	// ReservedTagCount is how many of an image's 50 tags amirotate keeps for
	// itself: policy, instance-id, rotation, created-by, source-image,
	// source-region, latest, trigger, and one for a user's amirotate:keep.
	ReservedTagCount = 9
	// MaxTags is EC2's limit of user tags per resource.
	MaxTags = 50
	// MaxTagKeyLength and MaxTagValueLength are EC2's limits, in Unicode characters.
	MaxTagKeyLength   = 128
	MaxTagValueLength = 256
)

// DecodePolicy decodes a policy strictly, fills in the defaults and
// validates it. Every problem (unknown field, wrong type, invalid value) is
// reported at once in one InvalidInputError, each naming its field.
func DecodePolicy(data []byte) (Policy, error) {
	return decodePolicy(data, "policy")
}

func decodePolicy(data []byte, root string) (Policy, error) {
	var p Policy
	if ps := decodeStrict(data, &p, root); len(ps) > 0 {
		// Validating a policy with misspelled or mistyped fields would only
		// add follow-up complaints (a misspelled "retention" reads as keep 0).
		return Policy{}, ps.err()
	}
	p = p.WithDefaults()
	if err := p.validate(root); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// WithDefaults returns a copy of p with every unset optional field at its
// default. It does not validate.
func (p Policy) WithDefaults() Policy {
	if len(p.Selector.Tags) == 0 {
		// An empty selector would match every instance in the account; the
		// default selects the instances that opted in to this policy.
		p.Selector.Tags = map[string]string{TagPolicy: p.Name}
	}
	if p.BatchSize == 0 {
		p.BatchSize = min(DefaultBatchSize, MaxImagesPerBatch/(1+len(p.CopyTo)))
	}
	if p.PollIntervalSeconds == 0 {
		p.PollIntervalSeconds = DefaultPollIntervalSeconds
	}
	if p.TimeoutMinutes == 0 {
		p.TimeoutMinutes = DefaultTimeoutMinutes
	}
	if p.NoReboot == nil {
		noReboot := true
		p.NoReboot = &noReboot
	}
	if p.MaxDeletionsPerInstance == 0 {
		p.MaxDeletionsPerInstance = DefaultMaxDeletionsPerInstance
	}
	if p.Rebuild.CooldownMinutes == 0 {
		p.Rebuild.CooldownMinutes = DefaultRebuildCooldownMinutes
	}
	if p.Rebuild.Keep == 0 {
		p.Rebuild.Keep = DefaultRebuildKeep
	}
	p.Verify = withVerifyDefaults(p.Verify)
	if p.Roll != nil && p.Roll.TimeoutMinutes == 0 {
		r := *p.Roll // a copy: the caller's policy is not changed
		r.TimeoutMinutes = DefaultRollTimeoutMinutes
		p.Roll = &r
	}
	p.Scripts = p.Scripts.withDefaults()
	return p
}

// Reboots reports whether CreateImage reboots the instance (noReboot false).
func (p Policy) Reboots() bool { return p.NoReboot != nil && !*p.NoReboot }

// RetentionFor returns the retention rule of an image: rebuilds keep
// rebuild.keep, copies use CopyRetention when the policy sets one.
func (p Policy) RetentionFor(copy, rebuild bool) Retention {
	if rebuild {
		return Retention{Keep: p.Rebuild.Keep}
	}
	if copy && p.CopyRetention != nil {
		return *p.CopyRetention
	}
	return p.Retention
}

// Regions returns the home region followed by the copy regions: every
// region where the policy's images live.
func (p Policy) Regions(home string) []string {
	regions := []string{home}
	for _, c := range p.CopyTo {
		regions = append(regions, c.Region)
	}
	return regions
}

// CheckHome reports a copy region equal to the home region: a copy there
// would carry the source's name, which EC2 refuses in the same region.
func (p Policy) CheckHome(home string) error {
	for i, c := range p.CopyTo {
		if c.Region == home {
			return Invalid(fmt.Sprintf("policy.copyTo[%d].region", i),
				"%s is the region the images are made in; remove it from copyTo", c.Region)
		}
	}
	return nil
}

// Validate checks the policy (with its defaults applied) and returns an
// InvalidInputError listing every problem, or nil.
func (p *Policy) Validate() error {
	return p.WithDefaults().validate("policy")
}

var (
	policyNameRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	// regionRE accepts the shapes of all public, China, GovCloud and ISO
	// regions (us-east-1, cn-north-1, us-gov-west-1, us-isob-east-1,
	// ap-southeast-4, il-central-1) without a list that would go stale.
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-(central|north|south|east|west|northeast|northwest|southeast|southwest)-[1-9][0-9]?$`)
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	kmsKeyRE  = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
	kmsAlias  = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
	kmsARNRE  = regexp.MustCompile(`^arn:aws(-cn|-us-gov|-iso[a-z]?)?:kms:([a-z0-9-]+):([0-9]{12}):(key/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})|alias/[a-zA-Z0-9/_-]{1,250})$`)
)

func (p Policy) validate(root string) error {
	var ps problems
	f := func(name string) string { return root + "." + name }

	if !policyNameRE.MatchString(p.Name) {
		if p.Name == "" {
			ps.add(f("name"), "is missing; set 1-32 lowercase letters, digits or hyphens, e.g. \"nightly\"")
		} else {
			ps.add(f("name"), "%q is not allowed; use 1-32 lowercase letters, digits or hyphens (it becomes part of AMI names and tags)", p.Name)
		}
	}

	for _, k := range slices.Sorted(maps.Keys(p.Selector.Tags)) {
		field := fmt.Sprintf("%s[%q]", f("selector.tags"), k)
		checkTagKey(&ps, field, k, false)
		if n := utf8.RuneCountInString(p.Selector.Tags[k]); n > MaxTagValueLength {
			ps.add(field, "value has %d characters; EC2 tag values have at most %d", n, MaxTagValueLength)
		}
	}

	seenRegion := map[string]int{}
	for i, c := range p.CopyTo {
		field := fmt.Sprintf("%s[%d]", f("copyTo"), i)
		switch {
		case c.Region == "":
			ps.add(field+".region", "is missing; set a region such as eu-west-1")
		case !regionRE.MatchString(c.Region):
			ps.add(field+".region", "%q is not a region name; use one like us-east-1, eu-central-2 or us-gov-west-1", c.Region)
		default:
			if j, dup := seenRegion[c.Region]; dup {
				ps.add(field+".region", "%s is already listed at copyTo[%d]; list each region once", c.Region, j)
			}
			seenRegion[c.Region] = i
		}
		if c.KMSKeyID != "" {
			checkKMSKey(&ps, field+".kmsKeyId", c.KMSKeyID, c.Region)
			if awsManagedEBSKey(c.KMSKeyID) && len(p.ShareWith) > 0 {
				ps.add(field+".kmsKeyId", "%q is the AWS managed key, which other accounts cannot use, so the copies shareWith names could not be launched by them; "+
					"set a customer managed key of %s whose key policy lets the accounts, organization or OUs use it", c.KMSKeyID, c.Region)
			}
		}
	}

	checkRetention(&ps, f("retention"), p.Retention)
	if p.CopyRetention != nil {
		checkRetention(&ps, f("copyRetention"), *p.CopyRetention)
	}

	for _, k := range slices.Sorted(maps.Keys(p.Tags)) {
		field := fmt.Sprintf("%s[%q]", f("tags"), k)
		checkTagKey(&ps, field, k, true)
		if n := utf8.RuneCountInString(p.Tags[k]); n > MaxTagValueLength {
			ps.add(field, "value has %d characters; EC2 tag values have at most %d", n, MaxTagValueLength)
		}
	}
	seenCopy := map[string]bool{}
	for i, k := range p.CopyInstanceTags {
		field := fmt.Sprintf("%s[%d]", f("copyInstanceTags"), i)
		checkTagKey(&ps, field, k, true)
		if seenCopy[k] {
			ps.add(field, "%q is listed twice; list each key once", k)
		}
		seenCopy[k] = true
		if _, both := p.Tags[k]; both {
			ps.add(field, "%q is also set in policy.tags; keep it in one of the two so the image's value is unambiguous", k)
		}
	}
	reserved := ReservedTagCount
	if p.Scripts != nil {
		reserved++ // amirotate:consistency
	}
	if n := len(p.Tags) + len(seenCopy); n > MaxTags-reserved {
		ps.add(f("tags"), "tags and copyInstanceTags add %d tags; at most %d fit (EC2 allows %d per image and amirotate needs %d)",
			n, MaxTags-reserved, MaxTags, reserved)
	}

	if p.DeprecateAfterDays < 0 || p.DeprecateAfterDays > MaxDeprecate {
		ps.add(f("deprecateAfterDays"), "is %d; set 0 (never) to %d days (EC2 refuses a deprecation more than 10 years ahead)", p.DeprecateAfterDays, MaxDeprecate)
	}

	seenShare := map[string]bool{}
	for i, a := range p.ShareWith {
		field := fmt.Sprintf("%s[%d]", f("shareWith"), i)
		checkShare(&ps, field, a, p.AllowPublic)
		if seenShare[a] {
			ps.add(field, "%q is listed twice; list each account, organization or OU once", a)
		}
		seenShare[a] = true
	}

	if p.ShareGraceDays != 0 && (p.ShareGraceDays < MinShareGraceDays || p.ShareGraceDays > MaxShareGraceDays) {
		ps.add(f("shareGraceDays"), "is %d; set %d to %d days (EC2's usage reports may miss launch template activity of the last few days)",
			p.ShareGraceDays, MinShareGraceDays, MaxShareGraceDays)
	}
	if p.DeprecateBeforeDeleteDays < 0 || p.DeprecateBeforeDeleteDays > MaxDeprecateBeforeDelete {
		ps.add(f("deprecateBeforeDeleteDays"), "is %d; set 0 (delete without deprecating first) to %d", p.DeprecateBeforeDeleteDays, MaxDeprecateBeforeDelete)
	}

	if p.Publish.SSMParameter != "" {
		checkSSMTemplate(&ps, f("publish.ssmParameter"), p.Publish.SSMParameter, p.Name)
	}

	maxBatch := min(MaxBatchSize, MaxImagesPerBatch/(1+len(p.CopyTo)))
	if p.BatchSize < 1 || p.BatchSize > maxBatch {
		ps.add(f("batchSize"), "is %d; set 1 to %d: a batch's state passes through Step Functions, which caps it at 256 KiB (at most %d instances, and %d images counting copies, per batch)",
			p.BatchSize, maxBatch, MaxBatchSize, MaxImagesPerBatch)
	}
	if p.PollIntervalSeconds < MinPollIntervalSeconds || p.PollIntervalSeconds > MaxPollIntervalSeconds {
		ps.add(f("pollIntervalSeconds"), "is %d; set %d to %d", p.PollIntervalSeconds, MinPollIntervalSeconds, MaxPollIntervalSeconds)
	}
	if p.TimeoutMinutes < MinTimeoutMinutes || p.TimeoutMinutes > MaxTimeoutMinutes {
		ps.add(f("timeoutMinutes"), "is %d; set %d to %d (48 hours)", p.TimeoutMinutes, MinTimeoutMinutes, MaxTimeoutMinutes)
	}
	if p.MaxDeletionsPerInstance < 1 || p.MaxDeletionsPerInstance > MaxKeep {
		ps.add(f("maxDeletionsPerInstance"), "is %d; set 1 to %d (raise it for one run to prune a backlog, e.g. after lowering keep)", p.MaxDeletionsPerInstance, MaxKeep)
	}
	if p.Rebuild.CooldownMinutes < 1 || p.Rebuild.CooldownMinutes > MaxRebuildCooldownMinutes {
		ps.add(f("rebuild.cooldownMinutes"), "is %d; set 1 to %d (a week)", p.Rebuild.CooldownMinutes, MaxRebuildCooldownMinutes)
	}
	if p.Rebuild.Keep < 1 || p.Rebuild.Keep > MaxKeep {
		ps.add(f("rebuild.keep"), "is %d; set 1 to %d", p.Rebuild.Keep, MaxKeep)
	}
	checkRoll(&ps, f("roll"), p)
	checkVerify(&ps, f("verify"), p.Verify)
	p.Scripts.validate(&ps, f("scripts"), !p.Reboots())
	for i, id := range p.Publish.AdoptLaunchTemplates {
		if !launchTemplateIDRE.MatchString(id) {
			ps.add(fmt.Sprintf("%s[%d]", f("publish.adoptLaunchTemplates"), i), "%q is not a launch template id (lt- and 17 hex digits)", id)
		}
	}
	return ps.err()
}

var launchTemplateIDRE = regexp.MustCompile(`^lt-[0-9a-f]{17}$`)

func checkRetention(ps *problems, field string, r Retention) {
	if r.Keep < 0 || r.Keep > MaxKeep {
		ps.add(field+".keep", "is %d; set 0 to %d", r.Keep, MaxKeep)
	}
	if r.MaxAgeDays < 0 || r.MaxAgeDays > MaxAgeDays {
		ps.add(field+".maxAgeDays", "is %d; set 0 to %d", r.MaxAgeDays, MaxAgeDays)
	}
	if r.Keep == 0 && r.MaxAgeDays == 0 {
		ps.add(field, "keep and maxAgeDays are both 0; set at least one (e.g. \"keep\": 7)")
	}
}

// checkTagKey checks a tag key. written says amirotate writes the key onto
// images, where aws: is refused by EC2 and amirotate: is reserved for the
// tool's own tags; a selector may read any key.
func checkTagKey(ps *problems, field, k string, written bool) {
	switch n := utf8.RuneCountInString(k); {
	case n == 0:
		ps.add(field, "tag key is empty; set a key")
		return
	case n > MaxTagKeyLength:
		ps.add(field, "tag key has %d characters; EC2 tag keys have at most %d", n, MaxTagKeyLength)
	}
	if !written {
		return
	}
	lower := strings.ToLower(k)
	switch {
	case strings.HasPrefix(lower, "aws:"):
		ps.add(field, "%q: keys starting with aws: are reserved by AWS and cannot be written; remove it", k)
	case strings.HasPrefix(lower, "amirotate:"):
		ps.add(field, "%q: keys starting with amirotate: are reserved for amirotate's own tags; use another prefix", k)
	}
}

func checkKMSKey(ps *problems, field, key, region string) {
	if kmsKeyRE.MatchString(key) || kmsAlias.MatchString(key) {
		return
	}
	m := kmsARNRE.FindStringSubmatch(key)
	if m == nil {
		ps.add(field, "%q is not a KMS key; use a key id, a multi-Region key id (mrk-...), alias/<name> or a key or alias ARN", key)
		return
	}
	if region != "" && m[2] != region {
		ps.add(field, "key ARN is in %s but the copy goes to %s; CopyImage needs a key in the destination region", m[2], region)
	}
}

// SSM parameter name placeholders.
const (
	PlaceholderPolicy     = "{policy}"
	PlaceholderInstanceID = "{instanceId}"
	PlaceholderRegion     = "{region}"
)

var ssmNameRE = regexp.MustCompile(`^[a-zA-Z0-9_./-]+$`)

// maxSSMName leaves room for the parameter ARN prefix within SSM's 1011
// characters, which count the full ARN.
const maxSSMName = 900

func checkSSMTemplate(ps *problems, field, tmpl, policy string) {
	rest := tmpl
	for {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			break
		}
		if rest[open] == '}' {
			ps.add(field, "has a } without a {; placeholders are {policy}, {instanceId} and {region}")
			return
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			ps.add(field, "has a { without a }; placeholders are {policy}, {instanceId} and {region}")
			return
		}
		ph := rest[open : open+end+1]
		switch ph {
		case PlaceholderPolicy, PlaceholderInstanceID, PlaceholderRegion:
		default:
			ps.add(field, "unknown placeholder %s; use {policy}, {instanceId} or {region}", ph)
			return
		}
		rest = rest[open+end+1:]
	}
	if !strings.Contains(tmpl, PlaceholderInstanceID) {
		ps.add(field, "must contain {instanceId}: each instance publishes its own image, e.g. /amirotate/{policy}/{instanceId}/latest")
		return
	}
	// Render with the policy's name and the longest instance id and region.
	if policy == "" {
		policy = "p"
	}
	name := renderSSM(tmpl, policy, "i-0123456789abcdef0", "us-isob-southeast-1")
	switch {
	case len(name) > maxSSMName:
		ps.add(field, "renders to %d characters; SSM allows about %d", len(name), maxSSMName)
	case !ssmNameRE.MatchString(name):
		ps.add(field, "may only contain letters, digits, _ . - / and placeholders")
	case strings.Contains(name, "/") && !strings.HasPrefix(name, "/"):
		ps.add(field, "a hierarchical name must start with /, e.g. /amirotate/{policy}/{instanceId}")
	case strings.Contains(name, "//") || strings.HasSuffix(name, "/"):
		ps.add(field, "has an empty path segment; remove the doubled or trailing /")
	case strings.Count(name, "/") > 15:
		ps.add(field, "has %d levels; SSM allows at most 15", strings.Count(name, "/"))
	default:
		first := strings.ToLower(strings.TrimPrefix(name, "/"))
		if strings.HasPrefix(first, "aws") || strings.HasPrefix(first, "ssm") {
			ps.add(field, "names starting with aws or ssm are reserved by SSM; start with another word, e.g. /amirotate/")
		}
	}
}

func renderSSM(tmpl, policy, instanceID, region string) string {
	return strings.NewReplacer(
		PlaceholderPolicy, policy,
		PlaceholderInstanceID, instanceID,
		PlaceholderRegion, region,
	).Replace(tmpl)
}

// SSMParameterName is the parameter that publishes the newest image of an
// instance in a region, or "" when the policy publishes none.
func SSMParameterName(p Policy, instanceID, region string) string {
	if p.Publish.SSMParameter == "" {
		return ""
	}
	return renderSSM(p.Publish.SSMParameter, p.Name, instanceID, region)
}
