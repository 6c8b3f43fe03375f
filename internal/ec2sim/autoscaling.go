package ec2sim

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// A minimal Auto Scaling (query protocol, Version 2011-01-01): launch
// configurations and groups are stored so that tools can see which images
// groups use, and instance refreshes run on the clock (refreshes.go);
// groups launch no instances.

const autoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

type launchConfiguration struct {
	seq          uint64
	name         string
	imageID      string
	instanceType string
	keyName      string
	created      time.Time
	groups       []string
}

type autoScalingGroup struct {
	seq       uint64
	name      string
	lcName    string
	ltID      string
	ltName    string
	ltVersion string
	mixed     bool
	min, max  int
	desired   int
	zones     []string
	vpcZones  string
	created   time.Time
	tags      []tag
}

var autoScalingActions = map[string]queryHandler{
	"CreateLaunchConfiguration":    (*Sim).asCreateLaunchConfiguration,
	"DescribeLaunchConfigurations": (*Sim).asDescribeLaunchConfigurations,
	"DeleteLaunchConfiguration":    (*Sim).asDeleteLaunchConfiguration,
	"CreateAutoScalingGroup":       (*Sim).asCreateAutoScalingGroup,
	"DescribeAutoScalingGroups":    (*Sim).asDescribeAutoScalingGroups,
	"DeleteAutoScalingGroup":       (*Sim).asDeleteAutoScalingGroup,
	"StartInstanceRefresh":         (*Sim).asStartInstanceRefresh,
	"DescribeInstanceRefreshes":    (*Sim).asDescribeInstanceRefreshes,
	"CancelInstanceRefresh":        (*Sim).asCancelInstanceRefresh,
}

func (s *Sim) serveAutoScaling(w http.ResponseWriter, r *http.Request, regionName string, p params) {
	action := p.str("Action")
	h, ok := autoScalingActions[action]
	if !ok {
		id := s.countUnknown(regionName, "autoscaling:"+action)
		writeQueryError(w, errorf("InvalidAction", "Could not find operation %s for version 2011-01-01", action), id)
		return
	}
	c := &call{p: p, w: &xw{}}
	// Auto Scaling's Describe actions support no resource-level permissions;
	// the instance refresh actions act on the group (its ARN and tags).
	az := &authzCall{build: func(reg *region) []AuthzRequest {
		if action == "StartInstanceRefresh" || action == "CancelInstanceRefresh" {
			if g, ok := reg.asgs[p.str("AutoScalingGroupName")]; ok {
				tags := map[string]string{}
				for _, t := range g.tags {
					tags[t.Key] = t.Value
				}
				return []AuthzRequest{{Action: "autoscaling:" + action, Resource: groupARN(reg.name, g), Context: resourceTags(map[string]any{}, tags)}}
			}
		}
		return []AuthzRequest{{Action: "autoscaling:" + action, Resource: "*", Context: map[string]any{}}}
	}, denied: autoScalingDenied}
	id, err := s.serve(r, regionName, "autoscaling:"+action, nil, az, func(reg *region, now time.Time) *apiError {
		c.r, c.now = reg, now
		return h(s, c)
	})
	if err != nil {
		if err.Code == "RequestLimitExceeded" {
			err = errorf("Throttling", "Rate exceeded")
		}
		writeQueryError(w, err, id)
		return
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<" + action + `Response xmlns="` + autoScalingNamespace + `">`)
	if c.w.b.Len() > 0 {
		b.WriteString("<" + action + "Result>")
		b.WriteString(c.w.b.String())
		b.WriteString("</" + action + "Result>")
	}
	b.WriteString("<ResponseMetadata><RequestId>" + id + "</RequestId></ResponseMetadata></" + action + "Response>")
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}

// writeQueryError writes the awsquery error envelope.
func writeQueryError(w http.ResponseWriter, e *apiError, requestID string) {
	var x xw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<ErrorResponse xmlns="` + autoScalingNamespace + `">`)
	x.open("Error")
	typ := "Sender"
	status := e.Status
	if status == 0 {
		status = StatusForCode(e.Code)
	}
	if status >= 500 {
		typ = "Receiver"
	}
	x.el("Type", typ)
	x.el("Code", e.Code)
	x.el("Message", e.Message)
	x.close("Error")
	x.el("RequestId", requestID)
	x.b.WriteString("</ErrorResponse>")
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(x.b.String()))
}

func asValidation(format string, args ...any) *apiError {
	return errorf("ValidationError", format, args...)
}

// members reads an awsquery list: prefix.member.N.
func (p params) members(prefix string) []string { return p.list(prefix + ".member") }

// asDescribe lists the entries of m that names name (every entry when it
// names none) and that match, in creation order, a page at a time:
// MaxRecords (default 50, at most 100) and NextToken.
func asDescribe[T any](p params, m map[string]T, names []string, seq func(T) uint64, match func(T) bool, kind string) ([]T, string, *apiError) {
	var items []T
	if len(names) > 0 {
		for _, n := range names {
			if v, ok := m[n]; ok {
				items = append(items, v)
			}
		}
	} else {
		for _, v := range m {
			items = append(items, v)
		}
	}
	sort.Slice(items, func(i, j int) bool { return seq(items[i]) < seq(items[j]) })
	limit, _, err := p.integer("MaxRecords")
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 || limit > 100 {
		limit = 50
	}
	page, next, err := paginate(items, seq, match, kind, p.str("NextToken"), limit)
	if err != nil {
		return nil, "", asValidation("%s", err.Message)
	}
	return page, next, nil
}

func (s *Sim) asCreateLaunchConfiguration(c *call) *apiError {
	p := c.p
	name := p.str("LaunchConfigurationName")
	if name == "" || len(name) > 255 {
		return asValidation("1 validation error detected: Value at 'launchConfigurationName' failed to satisfy constraint: Member must have length between 1 and 255")
	}
	if _, ok := c.r.launchConfigs[name]; ok {
		return errorf("AlreadyExists", "Launch Configuration by this name already exists - A launch configuration already exists with the name %s", name)
	}
	imageID := p.str("ImageId")
	if imageID == "" && p.str("InstanceId") == "" {
		return asValidation("Valid requests must contain either ImageId or InstanceId.")
	}
	if imageID != "" {
		if _, err := c.r.imageByID(imageID, c.now); err != nil {
			return asValidation("The image id '[%s]' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidAMIID.NotFound)", imageID)
		}
	} else {
		in, err := c.r.instanceByID(p.str("InstanceId"), c.now)
		if err != nil {
			return asValidation("%s", err.Message)
		}
		imageID = in.imageID
	}
	lc := &launchConfiguration{seq: s.nextSeq(), name: name, imageID: imageID, instanceType: p.str("InstanceType"),
		keyName: p.str("KeyName"), created: c.now, groups: p.members("SecurityGroups")}
	c.r.launchConfigs[name] = lc
	return nil
}

func (s *Sim) asDescribeLaunchConfigurations(c *call) *apiError {
	p := c.p
	page, next, err := asDescribe(p, c.r.launchConfigs, p.members("LaunchConfigurationNames"),
		func(lc *launchConfiguration) uint64 { return lc.seq }, func(*launchConfiguration) bool { return true }, "lcs")
	if err != nil {
		return err
	}
	w := c.w
	w.open("LaunchConfigurations")
	for _, lc := range page {
		w.open("member")
		w.el("LaunchConfigurationName", lc.name)
		w.el("LaunchConfigurationARN", "arn:aws:autoscaling:"+c.r.name+":"+AccountID+":launchConfiguration:"+lcUUID(lc)+":launchConfigurationName/"+lc.name)
		w.el("ImageId", lc.imageID)
		w.el("InstanceType", lc.instanceType)
		w.opt("KeyName", lc.keyName)
		w.open("SecurityGroups")
		for _, g := range lc.groups {
			w.el("member", g)
		}
		w.close("SecurityGroups")
		w.el("CreatedTime", fmtTime(lc.created))
		w.open("BlockDeviceMappings")
		w.close("BlockDeviceMappings")
		w.el("KernelId", "")
		w.el("RamdiskId", "")
		w.el("UserData", "")
		w.open("InstanceMonitoring")
		w.boolean("Enabled", true)
		w.close("InstanceMonitoring")
		w.boolean("EbsOptimized", false)
		w.close("member")
	}
	w.close("LaunchConfigurations")
	w.opt("NextToken", next)
	return nil
}

func lcUUID(lc *launchConfiguration) string {
	h := hashString(lc.name)
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(h), uint16(h>>32), uint16(h>>48), uint16(lc.seq), h&0xffffffffffff)
}

func (s *Sim) asDeleteLaunchConfiguration(c *call) *apiError {
	name := c.p.str("LaunchConfigurationName")
	if _, ok := c.r.launchConfigs[name]; !ok {
		return asValidation("Launch configuration name not found - Launch configuration %s not found", name)
	}
	for _, g := range c.r.asgs {
		if g.lcName == name {
			return errorf("ResourceInUse", "Cannot delete launch configuration %s because it is attached to AutoScalingGroup %s", name, g.name)
		}
	}
	delete(c.r.launchConfigs, name)
	return nil
}

func (s *Sim) asCreateAutoScalingGroup(c *call) *apiError {
	p := c.p
	name := p.str("AutoScalingGroupName")
	if name == "" || len(name) > 255 {
		return asValidation("1 validation error detected: Value at 'autoScalingGroupName' failed to satisfy constraint: Member must have length between 1 and 255")
	}
	if _, ok := c.r.asgs[name]; ok {
		return errorf("AlreadyExists", "AutoScalingGroup by this name already exists - A group with the name %s already exists", name)
	}
	g := &autoScalingGroup{seq: s.nextSeq(), name: name, created: c.now, zones: p.members("AvailabilityZones"), vpcZones: p.str("VPCZoneIdentifier")}
	var err *apiError
	if g.min, _, err = p.integer("MinSize"); err != nil {
		return err
	}
	if g.max, _, err = p.integer("MaxSize"); err != nil {
		return err
	}
	desired, ok, err := p.integer("DesiredCapacity")
	if err != nil {
		return err
	}
	if !ok {
		desired = g.min
	}
	g.desired = desired
	if g.min > g.max || desired < g.min || desired > g.max {
		return asValidation("Desired capacity:%d must be between the specified min size:%d and max size:%d", desired, g.min, g.max)
	}
	ltPrefix := ""
	switch {
	case p.has("LaunchTemplate.LaunchTemplateId") || p.has("LaunchTemplate.LaunchTemplateName"):
		ltPrefix = "LaunchTemplate."
	case p.has("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId") ||
		p.has("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName"):
		ltPrefix = "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification."
		g.mixed = true
	}
	lcName := p.str("LaunchConfigurationName")
	switch {
	case ltPrefix != "" && lcName != "":
		return asValidation("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	case ltPrefix != "":
		lt, err := c.r.templateByRef(p.str(ltPrefix+"LaunchTemplateId"), p.str(ltPrefix+"LaunchTemplateName"))
		if err != nil {
			return asValidation("%s", err.Message)
		}
		ver := p.str(ltPrefix + "Version")
		if ver != "" {
			if _, err := lt.version(ver); err != nil {
				return asValidation("%s", err.Message)
			}
		}
		g.ltID, g.ltName, g.ltVersion = lt.id, lt.name, ver
	case lcName != "":
		if _, ok := c.r.launchConfigs[lcName]; !ok {
			return asValidation("Launch configuration name not found - Launch configuration %s not found", lcName)
		}
		g.lcName = lcName
	default:
		return asValidation("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	}
	for _, n := range p.indexes("Tags.member") {
		pre := member("Tags.member", n)
		g.tags = append(g.tags, tag{Key: p.str(pre + "Key"), Value: p.str(pre + "Value")})
	}
	c.r.asgs[name] = g
	return nil
}

func (s *Sim) asDescribeAutoScalingGroups(c *call) *apiError {
	p := c.p
	// Filters.member.N.Name / Values.member.M: tag:<key>, tag-key, tag-value.
	type asFilter struct {
		name string
		vals map[string]bool
	}
	var fs []asFilter
	for _, n := range p.indexes("Filters.member") {
		pre := member("Filters.member", n)
		fs = append(fs, asFilter{name: p.str(pre + "Name"), vals: set(p.members(pre + "Values")...)})
	}
	match := func(g *autoScalingGroup) bool {
		for _, f := range fs {
			ok := false
			for _, t := range g.tags {
				switch {
				case strings.HasPrefix(f.name, "tag:") && t.Key == f.name[4:] && f.vals[t.Value],
					f.name == "tag-key" && f.vals[t.Key], f.name == "tag-value" && f.vals[t.Value]:
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
	c.r.settleRefreshes(c.now)
	page, next, err := asDescribe(p, c.r.asgs, p.members("AutoScalingGroupNames"),
		func(g *autoScalingGroup) uint64 { return g.seq }, match, "asgs")
	if err != nil {
		return err
	}
	w := c.w
	w.open("AutoScalingGroups")
	for _, g := range page {
		w.open("member")
		w.el("AutoScalingGroupName", g.name)
		w.el("AutoScalingGroupARN", groupARN(c.r.name, g))
		w.opt("LaunchConfigurationName", g.lcName)
		writeLT := func() {
			w.el("LaunchTemplateId", g.ltID)
			w.el("LaunchTemplateName", g.ltName)
			w.opt("Version", g.ltVersion)
		}
		if g.ltID != "" && !g.mixed {
			w.open("LaunchTemplate")
			writeLT()
			w.close("LaunchTemplate")
		}
		if g.mixed {
			w.open("MixedInstancesPolicy")
			w.open("LaunchTemplate")
			w.open("LaunchTemplateSpecification")
			writeLT()
			w.close("LaunchTemplateSpecification")
			w.close("LaunchTemplate")
			w.close("MixedInstancesPolicy")
		}
		w.integer("MinSize", g.min)
		w.integer("MaxSize", g.max)
		w.integer("DesiredCapacity", g.desired)
		w.integer("DefaultCooldown", 300)
		w.open("AvailabilityZones")
		for _, z := range g.zones {
			w.el("member", z)
		}
		w.close("AvailabilityZones")
		w.empty("LoadBalancerNames")
		w.empty("TargetGroupARNs")
		w.el("HealthCheckType", "EC2")
		w.integer("HealthCheckGracePeriod", 300)
		w.empty("Instances")
		w.el("CreatedTime", fmtTime(g.created))
		w.empty("SuspendedProcesses")
		w.opt("VPCZoneIdentifier", g.vpcZones)
		w.empty("EnabledMetrics")
		w.open("Tags")
		for _, t := range g.tags {
			w.open("member")
			w.el("ResourceId", g.name)
			w.el("ResourceType", "auto-scaling-group")
			w.el("Key", t.Key)
			w.el("Value", t.Value)
			w.boolean("PropagateAtLaunch", false)
			w.close("member")
		}
		w.close("Tags")
		w.open("TerminationPolicies")
		w.el("member", "Default")
		w.close("TerminationPolicies")
		w.boolean("NewInstancesProtectedFromScaleIn", false)
		w.el("ServiceLinkedRoleARN", "arn:aws:iam::"+AccountID+":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
		w.close("member")
	}
	w.close("AutoScalingGroups")
	w.opt("NextToken", next)
	return nil
}

// groupARN is the group's ARN; its id derives from the name alone, so the
// same world always gives the same ARNs.
func groupARN(region string, g *autoScalingGroup) string {
	h := hashString(g.name)
	return "arn:aws:autoscaling:" + region + ":" + AccountID + ":autoScalingGroup:" +
		fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(h), h>>16&0xffffffffffff) + ":autoScalingGroupName/" + g.name
}

func (s *Sim) asDeleteAutoScalingGroup(c *call) *apiError {
	name := c.p.str("AutoScalingGroupName")
	if _, ok := c.r.asgs[name]; !ok {
		return asValidation("AutoScalingGroup name not found - AutoScalingGroup '%s' not found", name)
	}
	delete(c.r.asgs, name)
	delete(c.r.refreshes, name)
	return nil
}
