package ec2sim

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type instance struct {
	seq           uint64
	id            string
	reservationID string
	imageID       string
	instanceType  string
	keyName       string
	subnetID      string
	vpcID         string
	az            string
	privateIP     string
	profileArn    string
	groups        []string
	launchTime    time.Time
	clientToken   string

	state        string
	terminatedAt time.Time
	target       string // state reached at targetAt ("" = none pending)
	targetAt     time.Time
	rootDevice   string
	architecture string
	volumes      []*volume
	tags         map[string]string

	runningSince time.Time // when it last became running (status checks, agent)
	platform     string    // "" (Linux) or "windows"
	agent        agent     // its SSM Agent (runcommand.go)
}

type volume struct {
	id                  string
	size                int
	volumeType          string
	instanceID          string
	device              string
	deleteOnTermination bool
	attachTime          time.Time
	tags                map[string]string
	encrypted           bool
	kmsKeyID            string // key ARN when encrypted
}

var instanceStateCodes = map[string]int{
	"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80,
}

var (
	reInstanceID = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reImageID    = regexp.MustCompile(`^ami-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reSnapshotID = regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reVolumeID   = regexp.MustCompile(`^vol-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reTemplateID = regexp.MustCompile(`^lt-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reAccountID  = regexp.MustCompile(`^[0-9]{12}$`)
)

// refresh applies a due state transition.
func (in *instance) refresh(now time.Time) {
	if in.target != "" && !now.Before(in.targetAt) {
		in.become(in.target, in.targetAt)
	}
}

// become puts the instance in state at time at, with no transition pending;
// terminating detaches its volumes.
func (in *instance) become(state string, at time.Time) {
	in.state, in.target = state, ""
	if state == "running" {
		in.runningSince = at
	}
	if state == "terminated" {
		in.terminatedAt = at
		for _, v := range in.volumes {
			v.instanceID = ""
		}
	}
}

// terminatedRetention is how long a terminated instance stays visible.
const terminatedRetention = time.Hour

// gone reports whether a terminated instance has dropped out of sight.
func (in *instance) gone(now time.Time) bool {
	return in.state == "terminated" && now.Sub(in.terminatedAt) >= terminatedRetention
}

// setInstanceState starts the transition to final through transient, which
// completes after InstanceDelay, or at once without one.
func (s *Sim) setInstanceState(in *instance, now time.Time, transient, final string) {
	if s.opts.InstanceDelay <= 0 {
		in.become(final, now)
		return
	}
	in.state, in.target, in.targetAt = transient, final, now.Add(s.opts.InstanceDelay)
}

// instanceByID validates and looks up one instance id.
func (r *region) instanceByID(id string, now time.Time) (*instance, *apiError) {
	ins, err := r.instancesByID([]string{id}, now)
	if err != nil {
		return nil, err
	}
	return ins[0], nil
}

// instancesByID looks up many ids and names every missing one at once, as EC2 does.
func (r *region) instancesByID(ids []string, now time.Time) ([]*instance, *apiError) {
	var out []*instance
	var missing []string
	for _, id := range ids {
		if !reInstanceID.MatchString(id) {
			return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
		}
		in, ok := r.instances[id]
		if ok {
			in.refresh(now)
		}
		if !ok || in.gone(now) {
			missing = append(missing, id)
			continue
		}
		out = append(out, in)
	}
	switch len(missing) {
	case 0:
		return out, nil
	case 1:
		return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
	}
	return nil, errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
}

// InstanceSpec describes an instance seeded from Go with RunInstance.
type InstanceSpec struct {
	// ImageID to launch from; default the region's Amazon Linux base image.
	ImageID string
	// InstanceType; default t3.micro.
	InstanceType string
	Tags         map[string]string
	// Volumes are EBS volume sizes in GiB; the first is the root volume.
	// Default one 8 GiB root volume.
	Volumes []int
	// Stopped seeds the instance in the stopped state.
	Stopped bool
	// ID, when set, is the instance's id instead of a generated one (tests
	// that name their instances); it must be a free, valid instance id.
	ID string
	// Windows makes it a Windows instance (SSM platform type Windows).
	Windows bool
	// Agent is its SSM Agent's state (see SetAgent); default AgentOnline:
	// seeded instances are managed nodes.
	Agent string
	// Encrypted encrypts its volumes with KMSKeyID (a key id, ARN or alias;
	// empty: the AWS managed key aws/ebs).
	Encrypted bool
	KMSKeyID  string
}

// RunInstance creates an instance directly (no request, not counted),
// running (or stopped), and returns its id.
func (s *Sim) RunInstance(regionName string, spec InstanceSpec) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, aerr := s.region(regionName)
	if aerr != nil {
		return "", aerr
	}
	imageID := spec.ImageID
	if imageID == "" {
		imageID = baseImageID(regionName, "x86_64")
	}
	img, ok := r.images[imageID]
	if !ok {
		return "", fmt.Errorf("ec2sim: image %s does not exist in %s", imageID, regionName)
	}
	sizes := spec.Volumes
	if len(sizes) == 0 {
		sizes = []int{8}
	}
	var tags []tag
	for _, k := range slices.Sorted(maps.Keys(spec.Tags)) {
		if err := checkTag(k, spec.Tags[k]); err != nil {
			return "", err
		}
		tags = append(tags, tag{k, spec.Tags[k]})
	}
	if len(tags) > maxTags {
		return "", errorf("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
	}
	var bdms []requestedVolume
	for i, size := range sizes {
		bdms = append(bdms, requestedVolume{device: deviceName(img, i), size: size, volumeType: "gp3", deleteOnTermination: true,
			encrypted: spec.Encrypted, kmsKeyID: spec.KMSKeyID})
	}
	if spec.ID != "" {
		if !instanceIDPattern.MatchString(spec.ID) {
			return "", fmt.Errorf("ec2sim: %q is not an instance id", spec.ID)
		}
		if _, taken := r.instances[spec.ID]; taken {
			return "", fmt.Errorf("ec2sim: instance %s already exists in %s", spec.ID, regionName)
		}
	}
	in := s.launchLocked(r, img, launchSpec{id: spec.ID, instanceType: spec.InstanceType, tags: tags, volumes: bdms}, s.newID("r"), s.Now())
	now := s.Now()
	if spec.Stopped {
		in.state, in.target = "stopped", ""
	} else {
		// A seeded instance has been running long enough to pass its status checks.
		in.state, in.target, in.runningSince = "running", "", now.Add(-s.opts.StatusCheckDelay)
	}
	if spec.Windows {
		in.platform = "windows"
	}
	agentState := cmp.Or(spec.Agent, AgentOnline)
	if err := checkAgentState(agentState); err != nil {
		return "", err
	}
	in.setAgent(agentState, now)
	return in.id, nil
}

func deviceName(img *image, i int) string {
	if i == 0 {
		return img.rootDevice
	}
	return "/dev/sd" + string(rune('a'+i))
}

type requestedVolume struct {
	device              string
	size                int
	volumeType          string
	deleteOnTermination bool
	noDevice            bool
	encrypted           bool
	kmsKeyID            string
}

type launchSpec struct {
	id                                                           string // "" = a new id
	instanceType, keyName, subnetID, profileArn, az, clientToken string
	groups                                                       []string
	tags, volumeTags                                             []tag
	volumes                                                      []requestedVolume
}

// launchLocked creates one instance with its volumes from img.
func (s *Sim) launchLocked(r *region, img *image, ls launchSpec, reservation string, now time.Time) *instance {
	if ls.instanceType == "" {
		ls.instanceType = "t3.micro"
	}
	az := ls.az
	if az == "" {
		az = r.name + "a"
	}
	seq := s.nextSeq()
	in := &instance{
		seq: seq, id: cmp.Or(ls.id, s.newID("i")), reservationID: reservation, imageID: img.id,
		instanceType: ls.instanceType, keyName: ls.keyName, subnetID: ls.subnetID,
		vpcID: "vpc-" + fmt.Sprintf("%017x", hashString(r.name)&0xfffffffffffffff), az: az,
		privateIP:  fmt.Sprintf("10.%d.%d.%d", (seq>>16)&0xff, (seq>>8)&0xff, seq&0xff),
		profileArn: ls.profileArn, groups: ls.groups, launchTime: now, clientToken: ls.clientToken,
		rootDevice: img.rootDevice, architecture: img.architecture, tags: map[string]string{},
	}
	if in.subnetID == "" {
		in.subnetID = defaultSubnet(az)
	}
	if len(in.groups) == 0 {
		in.groups = []string{defaultSecurityGroup(r.name)}
	}
	for _, t := range ls.tags {
		in.tags[t.Key] = t.Value
	}
	// Volumes: the image's mappings, overridden or extended by the request's.
	vols := map[string]requestedVolume{}
	var order []string
	for _, m := range img.bdm {
		vols[m.deviceName] = requestedVolume{device: m.deviceName, size: m.volumeSize, volumeType: m.volumeType, deleteOnTermination: m.deleteOnTermination, encrypted: m.encrypted, kmsKeyID: m.kmsKeyID}
		order = append(order, m.deviceName)
	}
	for _, rv := range ls.volumes {
		old, ok := vols[rv.device]
		if !ok {
			order = append(order, rv.device)
		} else {
			if rv.size == 0 {
				rv.size = old.size
			}
			// A volume from an encrypted snapshot is encrypted, with the
			// snapshot's key unless the request names another:
			// https://docs.aws.amazon.com/ebs/latest/userguide/encryption-behavior.html
			if old.encrypted {
				rv.encrypted = true
				if rv.kmsKeyID == "" {
					rv.kmsKeyID = old.kmsKeyID
				}
			}
		}
		if rv.volumeType == "" {
			rv.volumeType = "gp3"
		}
		vols[rv.device] = rv
	}
	for _, dev := range order {
		rv := vols[dev]
		if rv.noDevice {
			continue
		}
		if rv.size <= 0 {
			rv.size = 8
		}
		v := &volume{id: s.newID("vol"), size: rv.size, volumeType: rv.volumeType, instanceID: in.id, device: dev,
			deleteOnTermination: rv.deleteOnTermination, attachTime: now, tags: map[string]string{}, encrypted: rv.encrypted}
		if v.encrypted {
			v.kmsKeyID = s.resolveKMSKey(r.name, rv.kmsKeyID)
		}
		for _, t := range ls.volumeTags {
			v.tags[t.Key] = t.Value
		}
		r.volumes[v.id] = v
		in.volumes = append(in.volumes, v)
	}
	s.setInstanceState(in, now, "pending", "running")
	r.instances[in.id] = in
	r.instanceList = append(r.instanceList, in)
	return in
}

// defaultSubnet is the default VPC's subnet in an availability zone.
func defaultSubnet(az string) string {
	return "subnet-" + fmt.Sprintf("%017x", hashString(az)&0xfffffffffffffff)
}

// defaultSecurityGroup is the default VPC's default security group.
func defaultSecurityGroup(region string) string {
	return "sg-" + fmt.Sprintf("%017x", hashString(region+"default")&0xfffffffffffffff)
}

func hashString(s string) uint64 {
	// FNV-1a: stable ids for region-derived resources (VPC, subnets, base images).
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (s *Sim) runInstances(c *call) *apiError {
	p := c.p
	minCount, okMin, err := p.integer("MinCount")
	if err != nil {
		return err
	}
	maxCount, okMax, err := p.integer("MaxCount")
	if err != nil {
		return err
	}
	if !okMin {
		return errMissing("MinCount")
	}
	if !okMax {
		return errMissing("MaxCount")
	}
	if minCount < 1 || maxCount < minCount {
		return errInvalidValue("Invalid value '%d' for minCount. Must be at least 1 and at most maxCount", minCount)
	}
	if maxCount > 1000 {
		return errorf("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of 1000 allows for the specified instance type.", maxCount)
	}
	ls := launchSpec{
		instanceType: p.str("InstanceType"), keyName: p.str("KeyName"), subnetID: p.str("SubnetId"),
		az: p.str("Placement.AvailabilityZone"), clientToken: p.str("ClientToken"),
		groups: append(p.list("SecurityGroupId"), p.list("SecurityGroup")...),
	}
	if arn := p.str("IamInstanceProfile.Arn"); arn != "" {
		ls.profileArn = arn
	} else if name := p.str("IamInstanceProfile.Name"); name != "" {
		ls.profileArn = "arn:aws:iam::" + AccountID + ":instance-profile/" + name
	}
	imageID := p.str("ImageId")
	// Launch template: its version's data supplies what the request leaves out.
	if p.has("LaunchTemplate.LaunchTemplateId") || p.has("LaunchTemplate.LaunchTemplateName") {
		lt, err := c.r.templateByRef(p.str("LaunchTemplate.LaunchTemplateId"), p.str("LaunchTemplate.LaunchTemplateName"))
		if err != nil {
			return err
		}
		ver := p.str("LaunchTemplate.Version")
		if ver == "" {
			ver = "$Default"
		}
		v, err := lt.version(ver)
		if err != nil {
			return err
		}
		if imageID == "" {
			imageID = v.data.str("ImageId")
		}
		if ls.instanceType == "" {
			ls.instanceType = v.data.str("InstanceType")
		}
		if ls.keyName == "" {
			ls.keyName = v.data.str("KeyName")
		}
	}
	if imageID == "" {
		return errMissing("ImageId")
	}
	img, err := c.r.imageByID(imageID, c.now)
	if err != nil {
		return err
	}
	if img.state != "available" {
		return errorf("InvalidAMIID.Unavailable", "The image id '[%s]' is not available", imageID)
	}
	specs, err := p.tagSpecs("instance", "volume", "network-interface")
	if err != nil {
		return err
	}
	ls.tags, ls.volumeTags = tagsFor(specs, "instance"), tagsFor(specs, "volume")
	for _, ts := range [][]tag{ls.tags, ls.volumeTags} {
		if _, err := applyTags(nil, ts); err != nil {
			return err
		}
	}
	for _, n := range p.indexes("BlockDeviceMapping") {
		pre := member("BlockDeviceMapping", n)
		rv := requestedVolume{device: p.str(pre + "DeviceName"), volumeType: p.str(pre + "Ebs.VolumeType"), deleteOnTermination: true}
		if rv.device == "" {
			return errMissing(pre + "DeviceName")
		}
		rv.noDevice = p.has(pre + "NoDevice")
		if size, ok, err := p.integer(pre + "Ebs.VolumeSize"); err != nil {
			return err
		} else if ok {
			if size < 1 || size > 16384 {
				return errInvalidValue("Volume of %dGiB is outside the range of 1GiB to 16384GiB", size)
			}
			rv.size = size
		}
		if p.has(pre + "Ebs.DeleteOnTermination") {
			d, err := p.boolean(pre + "Ebs.DeleteOnTermination")
			if err != nil {
				return err
			}
			rv.deleteOnTermination = d
		}
		if rv.encrypted, err = p.boolean(pre + "Ebs.Encrypted"); err != nil {
			return err
		}
		if rv.kmsKeyID = p.str(pre + "Ebs.KmsKeyId"); rv.kmsKeyID != "" && !rv.encrypted {
			return errorf("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
		}
		ls.volumes = append(ls.volumes, rv)
	}
	// "If you repeat the request with the same client token, the same
	// response is returned" (Ensuring idempotency in Amazon EC2 API
	// requests, https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html):
	// a retried launch gets the instances the first one made.
	if ls.clientToken != "" {
		var same []*instance
		for _, in := range c.r.instanceList {
			if in.clientToken == ls.clientToken {
				same = append(same, in)
			}
		}
		if len(same) > 0 {
			if same[0].imageID != img.id {
				return errorf("IdempotentParameterMismatch", "The client token you have provided is associated with a resource that is already created with different parameters.")
			}
			c.w.el("reservationId", same[0].reservationID)
			c.w.el("ownerId", AccountID)
			c.w.empty("groupSet")
			c.w.open("instancesSet")
			for i, in := range same {
				in.refresh(c.now)
				c.w.open("item")
				writeInstance(c.w, in, i, in.state)
				c.w.close("item")
			}
			c.w.close("instancesSet")
			return nil
		}
	}
	img.lastLaunched = c.now
	reservation := s.newID("r")
	var insts []*instance
	for i := 0; i < maxCount; i++ {
		in := s.launchLocked(c.r, img, ls, reservation, c.now)
		if ls.profileArn != "" {
			// The agent registers once the instance runs (runcommand.go).
			in.setAgent(AgentOnline, c.now)
		}
		insts = append(insts, in)
	}
	w := c.w
	w.el("reservationId", reservation)
	w.el("ownerId", AccountID)
	w.empty("groupSet")
	w.open("instancesSet")
	// EC2 answers RunInstances with the instances as launched: pending, even
	// when (InstanceDelay 0) they are running by the next call.
	for i, in := range insts {
		w.open("item")
		writeInstance(w, in, i, "pending")
		w.close("item")
	}
	w.close("instancesSet")
	return nil
}

// writeInstance writes an instance; state overrides the reported state when set.
func writeInstance(w *xw, in *instance, launchIndex int, state string) {
	if state == "" {
		state = in.state
	}
	w.el("instanceId", in.id)
	w.el("imageId", in.imageID)
	w.open("instanceState")
	w.integer("code", instanceStateCodes[state])
	w.el("name", state)
	w.close("instanceState")
	w.el("privateDnsName", "ip-"+strings.ReplaceAll(in.privateIP, ".", "-")+".ec2.internal")
	w.el("dnsName", "")
	w.el("reason", "")
	w.opt("keyName", in.keyName)
	w.integer("amiLaunchIndex", launchIndex)
	w.empty("productCodes")
	w.el("instanceType", in.instanceType)
	w.el("launchTime", fmtTime(in.launchTime))
	w.open("placement")
	w.el("availabilityZone", in.az)
	w.el("tenancy", "default")
	w.close("placement")
	w.open("monitoring")
	w.el("state", "disabled")
	w.close("monitoring")
	w.el("subnetId", in.subnetID)
	w.el("vpcId", in.vpcID)
	w.el("privateIpAddress", in.privateIP)
	xmlList(w, "groupSet", in.groups, func(g string) {
		w.el("groupId", g)
		w.el("groupName", "default")
	})
	w.el("architecture", in.architecture)
	w.el("rootDeviceType", "ebs")
	w.el("rootDeviceName", in.rootDevice)
	xmlList(w, "blockDeviceMapping", in.volumes, func(v *volume) {
		w.el("deviceName", v.device)
		w.open("ebs")
		w.el("volumeId", v.id)
		status := "attached"
		if v.instanceID == "" {
			status = "detached"
		}
		w.el("status", status)
		w.el("attachTime", fmtTime(v.attachTime))
		w.boolean("deleteOnTermination", v.deleteOnTermination)
		w.close("ebs")
	})
	w.el("virtualizationType", "hvm")
	w.opt("clientToken", in.clientToken)
	w.tagSet("tagSet", in.tags)
	w.el("hypervisor", "xen")
	if in.profileArn != "" {
		w.open("iamInstanceProfile")
		w.el("arn", in.profileArn)
		w.el("id", "AIPA"+strings.ToUpper(in.id[2:]))
		w.close("iamInstanceProfile")
	}
	w.boolean("ebsOptimized", false)
	w.boolean("enaSupport", true)
	w.el("platformDetails", "Linux/UNIX")
	w.el("usageOperation", "RunInstances")
}

var instanceFilters = set("instance-id", "instance-state-name", "instance-state-code", "image-id", "tag-key",
	"instance-type", "key-name", "subnet-id", "vpc-id", "availability-zone", "reservation-id",
	"block-device-mapping.volume-id", "block-device-mapping.device-name", "iam-instance-profile.arn",
	"root-device-name", "architecture", "owner-id", "private-ip-address")

func (in *instance) filterValues(name string) []string {
	if v, ok := tagFilterValues(in.tags, name); ok {
		return v
	}
	switch name {
	case "instance-id":
		return []string{in.id}
	case "instance-state-name":
		return []string{in.state}
	case "instance-state-code":
		return []string{strconv.Itoa(instanceStateCodes[in.state])}
	case "image-id":
		return []string{in.imageID}
	case "instance-type":
		return []string{in.instanceType}
	case "key-name":
		return []string{in.keyName}
	case "subnet-id":
		return []string{in.subnetID}
	case "vpc-id":
		return []string{in.vpcID}
	case "availability-zone":
		return []string{in.az}
	case "reservation-id":
		return []string{in.reservationID}
	case "block-device-mapping.volume-id":
		out := make([]string, len(in.volumes))
		for i, v := range in.volumes {
			out[i] = v.id
		}
		return out
	case "block-device-mapping.device-name":
		out := make([]string, len(in.volumes))
		for i, v := range in.volumes {
			out[i] = v.device
		}
		return out
	case "iam-instance-profile.arn":
		return []string{in.profileArn}
	case "root-device-name":
		return []string{in.rootDevice}
	case "architecture":
		return []string{in.architecture}
	case "owner-id":
		return []string{AccountID}
	case "private-ip-address":
		return []string{in.privateIP}
	}
	return nil
}

func (s *Sim) describeInstances(c *call) *apiError {
	p := c.p
	ids := p.list("InstanceId")
	if len(ids) > 0 && p.has("MaxResults") {
		return errorf("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	limit, err := p.pageLimit(5, 1000, false)
	if err != nil {
		return err
	}
	fs, err := p.filters(instanceFilters, true)
	if err != nil {
		return err
	}
	items := c.r.instanceList
	if len(ids) > 0 {
		if items, err = c.r.instancesByID(ids, c.now); err != nil {
			return err
		}
		sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	}
	page, next, err := paginate(items, func(in *instance) uint64 { return in.seq }, func(in *instance) bool {
		in.refresh(c.now)
		return !in.gone(c.now) && matchFilters(fs, in.filterValues)
	}, "instances", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	// Group consecutive instances of one reservation, as EC2 does.
	var groups [][]*instance
	for _, in := range page {
		if n := len(groups); n > 0 && groups[n-1][0].reservationID == in.reservationID {
			groups[n-1] = append(groups[n-1], in)
			continue
		}
		groups = append(groups, []*instance{in})
	}
	w := c.w
	xmlList(w, "reservationSet", groups, func(g []*instance) {
		w.el("reservationId", g[0].reservationID)
		w.el("ownerId", AccountID)
		w.empty("groupSet")
		xmlList(w, "instancesSet", g, func(in *instance) { writeInstance(w, in, 0, "") })
	})
	w.opt("nextToken", next)
	return nil
}

// changeInstances is Start/Stop/Terminate: validate all, then transition.
func (s *Sim) changeInstances(c *call, verb string, allowed func(state string) bool, transient, final string) *apiError {
	ids := c.p.list("InstanceId")
	if len(ids) == 0 {
		return errMissing("InstanceId")
	}
	insts, err := c.r.instancesByID(ids, c.now)
	if err != nil {
		return err
	}
	for _, in := range insts {
		if !allowed(in.state) {
			return errorf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be %s.", in.id, verb)
		}
	}
	w := c.w
	w.open("instancesSet")
	for _, in := range insts {
		c.r.refreshInstanceInvocations(in.id, c.now)
		prev := in.state
		cur := in.state
		if prev != final && !(final == "running" && prev == "pending") {
			s.setInstanceState(in, c.now, transient, final)
			// The answer shows the transition as started (stopping,
			// shutting-down, pending), as EC2 does, even when it completes at once.
			cur = transient
		}
		w.open("item")
		w.el("instanceId", in.id)
		w.open("currentState")
		w.integer("code", instanceStateCodes[cur])
		w.el("name", cur)
		w.close("currentState")
		w.open("previousState")
		w.integer("code", instanceStateCodes[prev])
		w.el("name", prev)
		w.close("previousState")
		w.close("item")
	}
	w.close("instancesSet")
	return nil
}

func (s *Sim) startInstances(c *call) *apiError {
	return s.changeInstances(c, "started", func(st string) bool {
		return st == "stopped" || st == "running" || st == "pending"
	}, "pending", "running")
}

func (s *Sim) stopInstances(c *call) *apiError {
	return s.changeInstances(c, "stopped", func(st string) bool {
		return st == "running" || st == "pending" || st == "stopped" || st == "stopping"
	}, "stopping", "stopped")
}

func (s *Sim) terminateInstances(c *call) *apiError {
	return s.changeInstances(c, "terminated", func(string) bool { return true }, "shutting-down", "terminated")
}

// instanceIDPattern is the form of an instance id: i- and 8 or 17 hex digits.
var instanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
