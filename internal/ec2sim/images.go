package ec2sim

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type image struct {
	seq          uint64
	id           string
	name         string
	description  string
	ownerID      string
	ownerAlias   string
	state        string
	reason       *stateReason
	created      time.Time
	readyAt      time.Time
	failure      *stateReason // applied at readyAt instead of becoming available
	public       bool
	launchUsers  map[string]bool
	bdm          []imageBDM
	tags         map[string]string
	deprecation  time.Time
	protection   string    // disabled | enabled | enabled-with-cooldown
	protectUntil time.Time // cooldown after disabling protection that had one
	sourceInst   string
	sourceImage  string
	sourceRegion string
	rootDevice   string
	architecture string
	lastLaunched time.Time
}

type imageBDM struct {
	deviceName          string
	snapshotID          string
	volumeSize          int
	volumeType          string
	deleteOnTermination bool
	encrypted           bool
	kmsKeyID            string
}

type stateReason struct{ Code, Message string }

// refresh applies a due pending → available/failed transition.
func (img *image) refresh(now time.Time) {
	if img.state == "pending" && !now.Before(img.readyAt) {
		if img.failure != nil {
			img.state, img.reason = "failed", img.failure
		} else {
			img.state = "available"
		}
	}
}

func (img *image) visibleTo(acct string) bool {
	return img.ownerID == acct || img.public || img.launchUsers[acct]
}

func (img *image) deprecated(now time.Time) bool {
	return !img.deprecation.IsZero() && !now.Before(img.deprecation)
}

func (img *image) snapshotIDs() []string {
	var out []string
	for _, m := range img.bdm {
		if m.snapshotID != "" {
			out = append(out, m.snapshotID)
		}
	}
	return out
}

// protected reports whether deregistration is refused now.
func (img *image) protected(now time.Time) bool {
	return img.protection == "enabled" || img.protection == "enabled-with-cooldown" || now.Before(img.protectUntil)
}

func (img *image) protectionString(now time.Time) string {
	switch {
	case img.protection == "enabled-with-cooldown":
		return "enabled-with-cooldown"
	case img.protection == "enabled":
		return "enabled-without-cooldown"
	case now.Before(img.protectUntil):
		return "disabled-until " + img.protectUntil.UTC().Format("2006-01-02T15:04:05Z")
	}
	return "disabled"
}

// baseImageID is the stable id of a region's Amazon base image.
func baseImageID(regionName, arch string) string {
	return fmt.Sprintf("ami-0%016x", hashString("al2023/"+regionName+"/"+arch))
}

// BaseImageID returns the id of the Amazon Linux base image (x86_64) that
// every region is seeded with; RunInstances can launch from it.
func BaseImageID(region string) string { return baseImageID(region, "x86_64") }

// seedBaseImages registers the public Amazon-owned images of a region.
func (s *Sim) seedBaseImages(r *region) {
	created := time.Date(2026, 11, 1, 18, 12, 34, 0, time.UTC)
	for _, arch := range []string{"x86_64", "arm64"} {
		snap := &snapshot{
			seq: s.nextSeq(), id: fmt.Sprintf("snap-0%016x", hashString("al2023-snap/"+r.name+"/"+arch)),
			volumeID: "vol-ffffffff", ownerID: AmazonOwnerID, ownerAlias: "amazon", size: 8,
			started: created, readyAt: created, state: "completed",
			description: "Amazon Linux 2023 AMI 2023.6.20261101.0 " + arch + " HVM kernel-6.1",
			tags:        map[string]string{}, usedBy: map[string]bool{}, volumeUsers: map[string]bool{},
		}
		img := &image{
			seq: s.nextSeq(), id: baseImageID(r.name, arch),
			name:        "al2023-ami-2023.6.20261101.0-kernel-6.1-" + arch,
			description: "Amazon Linux 2023 AMI 2023.6.20261101.0 " + arch + " HVM kernel-6.1",
			ownerID:     AmazonOwnerID, ownerAlias: "amazon", state: "available", created: created, readyAt: created,
			public: true, launchUsers: map[string]bool{}, tags: map[string]string{}, protection: "disabled",
			rootDevice: "/dev/xvda", architecture: arch,
			bdm: []imageBDM{{deviceName: "/dev/xvda", snapshotID: snap.id, volumeSize: 8, volumeType: "gp3", deleteOnTermination: true}},
		}
		snap.usedBy[img.id] = true
		r.snapshots[snap.id] = snap
		r.snapshotList = append(r.snapshotList, snap)
		r.images[img.id] = img
		r.imageList = append(r.imageList, img)
	}
}

// imageByID validates and finds an image of the region visible to the caller.
func (r *region) imageByID(id string, now time.Time) (*image, *apiError) {
	imgs, err := r.imagesByID([]string{id}, now)
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// ownImage is imageByID for actions only the owner may take.
func (r *region) ownImage(id string, now time.Time) (*image, *apiError) {
	img, err := r.imageByID(id, now)
	if err != nil {
		return nil, err
	}
	if img.ownerID != AccountID {
		return nil, errorf("AuthFailure", "Not authorized for image:%s", id)
	}
	return img, nil
}

var reAMIName = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)

// nameAndDescription reads and checks a new image's Name and Description.
func nameAndDescription(p params) (name, desc string, err *apiError) {
	name, desc = p.str("Name"), p.str("Description")
	if name == "" {
		return "", "", errMissing("Name")
	}
	if !reAMIName.MatchString(name) {
		return "", "", errorf("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'")
	}
	if err := checkDescription(desc); err != nil {
		return "", "", err
	}
	return name, desc, nil
}

func checkDescription(d string) *apiError {
	if utf8.RuneCountInString(d) > 255 {
		return errInvalidValue("Value for parameter Description is invalid: it must be at most 255 characters long.")
	}
	return nil
}

// readyDelay grows with the volume size: base for up to 8 GiB, plus base
// for every further 100 GiB.
func readyDelay(base time.Duration, totalGiB int) time.Duration {
	if base <= 0 {
		return 0
	}
	extra := max(0, totalGiB-8)
	return base + time.Duration(float64(base)*float64(extra)/100)
}

func (s *Sim) createImage(c *call) *apiError {
	p := c.p
	instID, err := p.required("InstanceId")
	if err != nil {
		return err
	}
	name, desc, err := nameAndDescription(p)
	if err != nil {
		return err
	}
	if _, err := p.boolean("NoReboot"); err != nil {
		return err
	}
	in, err := c.r.instanceByID(instID, c.now)
	if err != nil {
		return err
	}
	if in.state != "running" && in.state != "stopped" {
		return errorf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be imaged (state: %s).", instID, in.state)
	}
	if err := c.r.checkNameFree(name); err != nil {
		return err
	}
	specs, err := p.tagSpecs("image", "snapshot")
	if err != nil {
		return err
	}
	imageTags, err := applyTags(nil, tagsFor(specs, "image"))
	if err != nil {
		return err
	}
	snapTags, err := applyTags(nil, tagsFor(specs, "snapshot"))
	if err != nil {
		return err
	}
	// BlockDeviceMapping.N can drop a volume (NoDevice) or change DeleteOnTermination.
	excluded := map[string]bool{}
	dot := map[string]*bool{}
	for _, n := range p.indexes("BlockDeviceMapping") {
		pre := member("BlockDeviceMapping", n)
		dev := p.str(pre + "DeviceName")
		if dev == "" {
			return errMissing(pre + "DeviceName")
		}
		if p.has(pre + "NoDevice") {
			if dev == in.rootDevice {
				return errorf("InvalidBlockDeviceMapping", "The device '%s' is the root device and cannot be excluded", dev)
			}
			excluded[dev] = true
		}
		if p.has(pre + "Ebs.DeleteOnTermination") {
			d, err := p.boolean(pre + "Ebs.DeleteOnTermination")
			if err != nil {
				return err
			}
			dot[dev] = &d
		}
	}
	imgID := s.newID("ami")
	total := 0
	for _, v := range in.volumes {
		if !excluded[v.device] {
			total += v.size
		}
	}
	ready := c.now.Add(readyDelay(s.opts.ImageDelay, total))
	failure := s.imageFailureLocked(c.r.name, "CreateImage", in.id)
	img := &image{
		seq: s.nextSeq(), id: imgID, name: name, description: desc, ownerID: AccountID,
		state: "pending", created: c.now, readyAt: ready, failure: failure,
		launchUsers: map[string]bool{}, tags: imageTags, protection: "disabled",
		sourceInst: in.id, rootDevice: in.rootDevice, architecture: in.architecture,
	}
	for _, v := range in.volumes {
		if excluded[v.device] {
			continue
		}
		snap := s.newSnapshotLocked(c.r, v.id, v.size, v.encrypted, v.kmsKeyID, c.now, ready, failure != nil,
			fmt.Sprintf("Created by CreateImage(%s) for %s", in.id, imgID), snapTags)
		snap.usedBy[imgID] = true
		d := v.deleteOnTermination
		if o := dot[v.device]; o != nil {
			d = *o
		}
		img.bdm = append(img.bdm, imageBDM{deviceName: v.device, snapshotID: snap.id, volumeSize: v.size,
			volumeType: v.volumeType, deleteOnTermination: d, encrypted: v.encrypted, kmsKeyID: snap.kmsKeyID})
	}
	c.r.addImageLocked(img)
	c.w.el("imageId", imgID)
	return nil
}

var imageFilters = set("name", "state", "image-id", "owner-id", "owner-alias", "is-public", "creation-date",
	"block-device-mapping.snapshot-id", "block-device-mapping.volume-size", "block-device-mapping.device-name",
	"block-device-mapping.volume-type", "block-device-mapping.encrypted", "block-device-mapping.delete-on-termination",
	"source-instance-id", "source-image-id", "source-image-region", "tag-key", "architecture", "description",
	"image-type", "root-device-name", "root-device-type", "virtualization-type", "platform", "platform-details",
	"hypervisor", "ena-support", "deprecation-time", "state-reason-code", "state-reason-message",
	"image-allowed", "kernel-id", "ramdisk-id", "product-code", "manifest-location")

func (img *image) filterValues(name string) []string {
	if v, ok := tagFilterValues(img.tags, name); ok {
		return v
	}
	bdm := func(f func(imageBDM) string) []string {
		out := make([]string, 0, len(img.bdm))
		for _, m := range img.bdm {
			out = append(out, f(m))
		}
		return out
	}
	switch name {
	case "name":
		return []string{img.name}
	case "state":
		return []string{img.state}
	case "image-id":
		return []string{img.id}
	case "owner-id":
		return []string{img.ownerID}
	case "owner-alias":
		return []string{img.ownerAlias}
	case "is-public":
		return []string{boolStr(img.public)}
	case "creation-date":
		return []string{fmtTime(img.created)}
	case "block-device-mapping.snapshot-id":
		return bdm(func(m imageBDM) string { return m.snapshotID })
	case "block-device-mapping.volume-size":
		return bdm(func(m imageBDM) string { return strconv.Itoa(m.volumeSize) })
	case "block-device-mapping.device-name":
		return bdm(func(m imageBDM) string { return m.deviceName })
	case "block-device-mapping.volume-type":
		return bdm(func(m imageBDM) string { return m.volumeType })
	case "block-device-mapping.encrypted":
		return bdm(func(m imageBDM) string { return boolStr(m.encrypted) })
	case "block-device-mapping.delete-on-termination":
		return bdm(func(m imageBDM) string { return boolStr(m.deleteOnTermination) })
	case "source-instance-id":
		return []string{img.sourceInst}
	case "source-image-id":
		return []string{img.sourceImage}
	case "source-image-region":
		return []string{img.sourceRegion}
	case "architecture":
		return []string{img.architecture}
	case "description":
		return []string{img.description}
	case "image-type":
		return []string{"machine"}
	case "root-device-name":
		return []string{img.rootDevice}
	case "root-device-type":
		return []string{"ebs"}
	case "virtualization-type":
		return []string{"hvm"}
	case "platform-details":
		return []string{"Linux/UNIX"}
	case "hypervisor":
		return []string{"xen"}
	case "ena-support":
		return []string{"true"}
	case "deprecation-time":
		if img.deprecation.IsZero() {
			return nil
		}
		return []string{fmtTime(img.deprecation)}
	case "state-reason-code":
		if img.reason != nil {
			return []string{img.reason.Code}
		}
	case "state-reason-message":
		if img.reason != nil {
			return []string{img.reason.Message}
		}
	case "image-allowed":
		return []string{"true"}
	}
	return nil
}

var reOwner = regexp.MustCompile(`^(self|amazon|aws-marketplace|aws-backup-vault|[0-9]{12})$`)

func (s *Sim) describeImages(c *call) *apiError {
	p := c.p
	owners := p.list("Owner")
	for _, o := range owners {
		if !reOwner.MatchString(o) {
			return errorf("InvalidUserID.Malformed", "Invalid user id: \"%s\"", o)
		}
	}
	execBy := p.list("ExecutableBy")
	for _, e := range execBy {
		if e != "self" && e != "all" && !reAccountID.MatchString(e) {
			return errorf("InvalidUserID.Malformed", "Invalid user id: \"%s\"", e)
		}
	}
	incDeprecated, err := p.boolean("IncludeDeprecated")
	if err != nil {
		return err
	}
	incDisabled, err := p.boolean("IncludeDisabled")
	if err != nil {
		return err
	}
	limit, err := p.pageLimit(1, 1000, false)
	if err != nil {
		return err
	}
	fs, err := p.filters(imageFilters, true)
	if err != nil {
		return err
	}
	items := c.r.imageList
	if ids := p.list("ImageId"); len(ids) > 0 {
		if items, err = c.r.imagesByID(ids, c.now); err != nil {
			return err
		}
	}
	match := func(img *image) bool {
		img.refresh(c.now)
		if !img.visibleTo(AccountID) {
			return false
		}
		if img.state == "disabled" && !incDisabled {
			return false
		}
		if img.deprecated(c.now) && !incDeprecated && img.ownerID != AccountID {
			return false
		}
		if len(owners) > 0 && !matchOwner(img.ownerID, img.ownerAlias, owners) {
			return false
		}
		if len(execBy) > 0 && !matchExecutable(img, execBy) {
			return false
		}
		return matchFilters(fs, img.filterValues)
	}
	page, next, err := paginate(items, func(img *image) uint64 { return img.seq }, match, "images", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "imagesSet", page, func(img *image) { writeImage(w, img, c.now) })
	w.opt("nextToken", next)
	return nil
}

// imagesByID resolves ImageId.N, naming every missing id in one error.
func (r *region) imagesByID(ids []string, now time.Time) ([]*image, *apiError) {
	var out []*image
	var missing []string
	seen := map[string]bool{}
	for _, id := range ids {
		if !reImageID.MatchString(id) {
			return nil, errorf("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		img, ok := r.images[id]
		if !ok || !img.visibleTo(AccountID) {
			missing = append(missing, id)
			continue
		}
		img.refresh(now)
		out = append(out, img)
	}
	switch len(missing) {
	case 0:
	case 1:
		return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", missing[0])
	default:
		return nil, errorf("InvalidAMIID.NotFound", "The image ids '[%s]' do not exist", strings.Join(missing, ", "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}

// matchOwner reports whether an image or snapshot of ownerID (alias
// ownerAlias) matches one of the Owner.N values of a Describe call.
func matchOwner(ownerID, ownerAlias string, owners []string) bool {
	for _, o := range owners {
		switch o {
		case "self":
			if ownerID == AccountID {
				return true
			}
		case "amazon":
			if ownerAlias == "amazon" {
				return true
			}
		default:
			if ownerID == o {
				return true
			}
		}
	}
	return false
}

func matchExecutable(img *image, execBy []string) bool {
	for _, e := range execBy {
		switch e {
		case "all":
			if img.public {
				return true
			}
		case "self":
			if img.visibleTo(AccountID) {
				return true
			}
		default:
			if img.public || img.launchUsers[e] || img.ownerID == e {
				return true
			}
		}
	}
	return false
}

func writeImage(w *xw, img *image, now time.Time) {
	w.el("imageId", img.id)
	loc := img.ownerID + "/" + img.name
	if img.ownerAlias != "" {
		loc = img.ownerAlias + "/" + img.name
	}
	w.el("imageLocation", loc)
	w.el("imageState", img.state)
	w.el("imageOwnerId", img.ownerID)
	w.el("creationDate", fmtTime(img.created))
	w.boolean("isPublic", img.public)
	w.el("architecture", img.architecture)
	w.el("imageType", "machine")
	w.el("platformDetails", "Linux/UNIX")
	w.el("usageOperation", "RunInstances")
	w.opt("imageOwnerAlias", img.ownerAlias)
	w.el("name", img.name)
	w.opt("description", img.description)
	w.el("rootDeviceType", "ebs")
	w.el("rootDeviceName", img.rootDevice)
	xmlList(w, "blockDeviceMapping", img.bdm, func(m imageBDM) {
		w.el("deviceName", m.deviceName)
		w.open("ebs")
		w.el("snapshotId", m.snapshotID)
		w.integer("volumeSize", m.volumeSize)
		w.boolean("deleteOnTermination", m.deleteOnTermination)
		w.el("volumeType", m.volumeType)
		if m.volumeType == "gp3" {
			w.integer("iops", 3000)
			w.integer("throughput", 125)
		}
		w.boolean("encrypted", m.encrypted)
		w.opt("kmsKeyId", m.kmsKeyID)
		w.close("ebs")
	})
	w.el("virtualizationType", "hvm")
	w.tagSet("tagSet", img.tags)
	if img.reason != nil {
		w.open("stateReason")
		w.el("code", img.reason.Code)
		w.el("message", img.reason.Message)
		w.close("stateReason")
	}
	w.el("hypervisor", "xen")
	w.boolean("enaSupport", true)
	w.el("bootMode", "uefi-preferred")
	if !img.deprecation.IsZero() {
		w.el("deprecationTime", fmtTime(img.deprecation))
	}
	w.el("imdsSupport", "v2.0")
	w.opt("sourceInstanceId", img.sourceInst)
	w.el("deregistrationProtection", img.protectionString(now))
	if !img.lastLaunched.IsZero() {
		w.el("lastLaunchedTime", fmtTime(img.lastLaunched))
	}
	w.opt("sourceImageId", img.sourceImage)
	w.opt("sourceImageRegion", img.sourceRegion)
	w.boolean("imageAllowed", true)
	w.boolean("freeTierEligible", img.ownerAlias == "amazon")
}

// copyToken remembers a CopyImage ClientToken: what it was used with and
// what it produced.
type copyToken struct {
	fingerprint string
	imageID     string
}

func copyFingerprint(p params) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		switch k {
		case "Action", "Version", "ClientToken", "DryRun":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strings.Join(p[k], ","))
		b.WriteByte('&')
	}
	return b.String()
}

// kmsArn expands a key id, alias or ARN to the ARN EC2 reports.
func kmsArn(regionName, key string) string {
	switch {
	case key == "" || key == AWSManagedEBSAlias:
		return "arn:aws:kms:" + regionName + ":" + AccountID + ":key/" + awsEBSKeyID(regionName)
	case strings.HasPrefix(key, "arn:"):
		return key
	case strings.HasPrefix(key, "alias/"):
		return "arn:aws:kms:" + regionName + ":" + AccountID + ":" + key
	}
	return "arn:aws:kms:" + regionName + ":" + AccountID + ":key/" + key
}

func (s *Sim) copyImage(c *call) *apiError {
	p := c.p
	srcRegion, err := p.required("SourceRegion")
	if err != nil {
		return err
	}
	srcID, err := p.required("SourceImageId")
	if err != nil {
		return err
	}
	name, desc, err := nameAndDescription(p)
	if err != nil {
		return err
	}
	encrypted, err := p.boolean("Encrypted")
	if err != nil {
		return err
	}
	kmsKey := p.str("KmsKeyId")
	if kmsKey != "" && !encrypted {
		return errorf("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	copyTags, err := p.boolean("CopyImageTags")
	if err != nil {
		return err
	}
	specs, err := p.tagSpecs("image", "snapshot")
	if err != nil {
		return err
	}
	token := p.str("ClientToken")
	fp := copyFingerprint(p)
	if token != "" {
		if prev, ok := c.r.copyTokens[token]; ok {
			if prev.fingerprint != fp {
				return errorf("IdempotentParameterMismatch", "The client token %s has already been used with different parameters.", token)
			}
			c.w.el("imageId", prev.imageID)
			return nil
		}
	}
	src, ok := s.regions[srcRegion]
	if !ok {
		return errorf("InvalidRegion", "Invalid region: %s", srcRegion)
	}
	srcImg, err := src.imageByID(srcID, c.now)
	if err != nil {
		return err
	}
	if srcImg.state != "available" {
		return errorf("IncorrectState", "Image %s is not in a valid state (%s) for copying; it must be available.", srcID, srcImg.state)
	}
	if err := c.r.checkNameFree(name); err != nil {
		return err
	}
	// Concurrent-copy limit per destination region (count pending copies).
	for id, img := range c.r.pendingCopy {
		img.refresh(c.now)
		if img.state != "pending" {
			delete(c.r.pendingCopy, id)
		}
	}
	if len(c.r.pendingCopy) >= s.opts.MaxConcurrentCopies {
		return errorf("ResourceLimitExceeded", "You have reached the maximum number of concurrent AMI copies (%d) for the destination Region %s. Wait for pending copies to complete and try again.", s.opts.MaxConcurrentCopies, c.r.name)
	}
	imageTags := map[string]string{}
	if copyTags {
		for k, v := range srcImg.tags {
			imageTags[k] = v
		}
	}
	if imageTags, err = applyTags(imageTags, tagsFor(specs, "image")); err != nil {
		return err
	}
	snapTags, err := applyTags(nil, tagsFor(specs, "snapshot"))
	if err != nil {
		return err
	}
	if desc == "" {
		desc = fmt.Sprintf("[Copied %s from %s] %s", srcID, srcRegion, srcImg.description)
		if utf8.RuneCountInString(desc) > 255 {
			desc = string([]rune(desc)[:255])
		}
	}
	total := 0
	for _, m := range srcImg.bdm {
		total += m.volumeSize
	}
	imgID := s.newID("ami")
	ready := c.now.Add(readyDelay(s.opts.CopyDelay, total))
	failure := s.imageFailureLocked(c.r.name, "CopyImage", srcImg.sourceInst)
	img := &image{
		seq: s.nextSeq(), id: imgID, name: name, description: desc, ownerID: AccountID,
		state: "pending", created: c.now, readyAt: ready, failure: failure,
		launchUsers: map[string]bool{}, tags: imageTags, protection: "disabled",
		sourceImage: srcID, sourceRegion: srcRegion, rootDevice: srcImg.rootDevice,
		architecture: srcImg.architecture,
	}
	for _, m := range srcImg.bdm {
		enc, key := m.encrypted, m.kmsKeyID
		if encrypted {
			enc, key = true, kmsArn(c.r.name, kmsKey)
		} else if enc && srcRegion != c.r.name {
			key = kmsArn(c.r.name, "")
		}
		snap := s.newSnapshotLocked(c.r, "vol-ffffffff", m.volumeSize, enc, key, c.now, ready, failure != nil,
			fmt.Sprintf("Copied for DestinationAmi %s from SourceAmi %s for SourceSnapshot %s. Task created on %d.", imgID, srcID, m.snapshotID, c.now.UnixMilli()),
			snapTags)
		snap.usedBy[imgID] = true
		mm := m
		mm.snapshotID, mm.encrypted, mm.kmsKeyID = snap.id, enc, key
		img.bdm = append(img.bdm, mm)
	}
	c.r.addImageLocked(img)
	c.r.pendingCopy[imgID] = img
	if token != "" {
		c.r.copyTokens[token] = copyToken{fingerprint: fp, imageID: imgID}
	}
	c.w.el("imageId", imgID)
	return nil
}

// checkNameFree refuses a name another image of the region has.
func (r *region) checkNameFree(name string) *apiError {
	if other, ok := r.imageNames[name]; ok {
		return errorf("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, other.id)
	}
	return nil
}

// addImageLocked registers a new image under its id and name.
func (r *region) addImageLocked(img *image) {
	r.images[img.id] = img
	r.imageList = append(r.imageList, img)
	r.imageNames[img.name] = img
}

// removeImageLocked deregisters an image: it disappears at once (EC2 keeps
// deregistered images visible for a short while; nothing here needs that).
func (r *region) removeImageLocked(img *image) {
	delete(r.images, img.id)
	if r.imageNames[img.name] == img {
		delete(r.imageNames, img.name)
	}
	delete(r.pendingCopy, img.id)
	r.imageList = removeSeq(r.imageList, func(i *image) uint64 { return i.seq }, img.seq)
	for _, m := range img.bdm {
		if snap, ok := r.snapshots[m.snapshotID]; ok {
			delete(snap.usedBy, img.id)
		}
	}
}

func (s *Sim) deregisterImage(c *call) *apiError {
	id, err := c.p.required("ImageId")
	if err != nil {
		return err
	}
	del, err := c.p.boolean("DeleteAssociatedSnapshots")
	if err != nil {
		return err
	}
	img, err := c.r.ownImage(id, c.now)
	if err != nil {
		return err
	}
	if img.protected(c.now) {
		return errorf("OperationNotPermitted", "Image %s is protected from deregistration. Disable deregistration protection first (state: %s).", id, img.protectionString(c.now))
	}
	c.r.removeImageLocked(img)
	c.w.boolean("return", true)
	if !del {
		return nil
	}
	type result struct{ id, code string }
	var results []result
	for _, sid := range img.snapshotIDs() {
		snap, ok := c.r.snapshots[sid]
		switch {
		case !ok:
			results = append(results, result{sid, "client-error"})
		case len(snap.usedBy) > 0:
			// Still used by another image: EC2 keeps it and reports it skipped.
			results = append(results, result{sid, "skipped"})
		default:
			c.r.removeSnapshotLocked(snap)
			results = append(results, result{sid, "success"})
		}
	}
	xmlList(c.w, "deleteSnapshotResultSet", results, func(r result) {
		c.w.el("snapshotId", r.id)
		c.w.el("returnCode", r.code)
	})
	return nil
}

// parseAWSTime reads an ISO-8601 timestamp as the SDKs send it.
func parseAWSTime(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z", "2006-01-02T15:04Z", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)).UTC(), true
	}
	return time.Time{}, false
}

// changeOwnImage serves the actions that change one of the caller's own
// images and answer return=true. paramErr is what the action's other
// parameters were refused with, if anything: it is answered after a missing
// ImageId and before the image is looked up.
func changeOwnImage(c *call, paramErr *apiError, change func(img *image) *apiError) *apiError {
	id, err := c.p.required("ImageId")
	if err != nil {
		return err
	}
	if paramErr != nil {
		return paramErr
	}
	img, err := c.r.ownImage(id, c.now)
	if err != nil {
		return err
	}
	if err := change(img); err != nil {
		return err
	}
	c.w.boolean("return", true)
	return nil
}

func (s *Sim) enableImageDeprecation(c *call) *apiError {
	raw, paramErr := c.p.required("DeprecateAt")
	at, ok := parseAWSTime(raw)
	if paramErr == nil && !ok {
		paramErr = errInvalidValue("Value (%s) for parameter DeprecateAt is invalid. Expected an ISO 8601 timestamp.", raw)
	}
	return changeOwnImage(c, paramErr, func(img *image) *apiError {
		at = at.Round(time.Minute)
		if !at.After(c.now) {
			return errInvalidValue("The deprecation time %s must be in the future.", at.Format(time.RFC3339))
		}
		if at.After(c.now.AddDate(10, 0, 0)) {
			return errInvalidValue("The deprecation time %s must be within 10 years from now.", at.Format(time.RFC3339))
		}
		img.deprecation = at
		return nil
	})
}

func (s *Sim) disableImageDeprecation(c *call) *apiError {
	return changeOwnImage(c, nil, func(img *image) *apiError {
		img.deprecation = time.Time{}
		return nil
	})
}

func (s *Sim) enableImageDeregistrationProtection(c *call) *apiError {
	cool, paramErr := c.p.boolean("WithCooldown")
	return changeOwnImage(c, paramErr, func(img *image) *apiError {
		img.protection = "enabled"
		if cool {
			img.protection = "enabled-with-cooldown"
		}
		img.protectUntil = time.Time{}
		return nil
	})
}

func (s *Sim) disableImageDeregistrationProtection(c *call) *apiError {
	return changeOwnImage(c, nil, func(img *image) *apiError {
		if img.protection == "enabled-with-cooldown" {
			img.protectUntil = c.now.Add(24 * time.Hour)
		}
		img.protection = "disabled"
		return nil
	})
}

func (s *Sim) enableImage(c *call) *apiError {
	return changeOwnImage(c, nil, func(img *image) *apiError {
		if img.state != "disabled" && img.state != "available" {
			return errorf("IncorrectState", "Image %s is in state %s; only a disabled image can be enabled.", img.id, img.state)
		}
		img.state = "available"
		return nil
	})
}

func (s *Sim) disableImage(c *call) *apiError {
	return changeOwnImage(c, nil, func(img *image) *apiError {
		if img.state != "available" && img.state != "disabled" {
			return errorf("IncorrectState", "Image %s is in state %s; only an available image can be disabled.", img.id, img.state)
		}
		// Disabling makes the image private: shares are dropped and not restored.
		img.state = "disabled"
		img.public = false
		img.launchUsers = map[string]bool{}
		return nil
	})
}

// permissionChanges reads the add/remove lists of ModifyImageAttribute or
// ModifySnapshotAttribute in both wire forms: structured
// (<Struct>.Add.N.UserId / .Group) and flat (OperationType + UserId.N / UserGroup.N).
func permissionChanges(p params, structName string) (add, remove []string, err *apiError) {
	for _, op := range []string{"Add", "Remove"} {
		pre := structName + "." + op
		for _, n := range p.indexes(pre) {
			m := member(pre, n)
			var v string
			switch {
			case p.str(m+"UserId") != "":
				v = p.str(m + "UserId")
			case p.str(m+"Group") != "":
				v = "group:" + p.str(m+"Group")
			case structName == "LaunchPermission" && p.str(m+"OrganizationArn") != "":
				v = permOrg + p.str(m+"OrganizationArn")
			case structName == "LaunchPermission" && p.str(m+"OrganizationalUnitArn") != "":
				v = permOU + p.str(m+"OrganizationalUnitArn")
			default:
				continue
			}
			if op == "Add" {
				add = append(add, v)
			} else {
				remove = append(remove, v)
			}
		}
	}
	if ot := p.str("OperationType"); ot != "" {
		var vals []string
		vals = append(vals, p.list("UserId")...)
		for _, g := range p.list("UserGroup") {
			vals = append(vals, "group:"+g)
		}
		switch ot {
		case "add":
			add = append(add, vals...)
		case "remove":
			remove = append(remove, vals...)
		default:
			return nil, nil, errInvalidValue("Value (%s) for parameter operationType is invalid. Expected: 'add' or 'remove'.", ot)
		}
	}
	for _, v := range slices.Concat(add, remove) {
		if err := checkOrgPermission(v); err != nil {
			return nil, nil, err
		}
		if strings.HasPrefix(v, permOrg) || strings.HasPrefix(v, permOU) {
			continue
		}
		if g, ok := strings.CutPrefix(v, "group:"); ok {
			if g != "all" {
				return nil, nil, errInvalidValue("Value (%s) for parameter group is invalid. Expected: 'all'.", g)
			}
		} else if !reAccountID.MatchString(v) {
			return nil, nil, errorf("InvalidAMIAttributeItemValue", "Invalid attribute item value \"%s\" for userId item type.", v)
		}
	}
	return add, remove, nil
}

// applyPermissions applies permission changes read by permissionChanges
// to a resource's public flag and account list.
func applyPermissions(public *bool, users map[string]bool, add, remove []string) {
	for _, v := range add {
		if v == "group:all" {
			*public = true
		} else {
			users[v] = true
		}
	}
	for _, v := range remove {
		if v == "group:all" {
			*public = false
		} else {
			delete(users, v)
		}
	}
}

// writePermissions writes a launch or create-volume permission list:
// <item><group>all</group></item> when public, then an item per account.
func writePermissions(w *xw, name string, public bool, users map[string]bool) {
	var perms []string
	if public {
		perms = append(perms, "group:all")
	}
	perms = append(perms, slices.Sorted(maps.Keys(users))...)
	xmlList(w, name, perms, func(v string) {
		if g, ok := strings.CutPrefix(v, "group:"); ok {
			w.el("group", g)
		} else if arn, ok := strings.CutPrefix(v, permOrg); ok {
			w.el("organizationArn", arn)
		} else if arn, ok := strings.CutPrefix(v, permOU); ok {
			w.el("organizationalUnitArn", arn)
		} else {
			w.el("userId", v)
		}
	})
}

func (s *Sim) modifyImageAttribute(c *call) *apiError {
	p := c.p
	id, err := p.required("ImageId")
	if err != nil {
		return err
	}
	img, err := c.r.ownImage(id, c.now)
	if err != nil {
		return err
	}
	attr := p.str("Attribute")
	switch {
	case attr == "description" || attr == "" && p.has("Description.Value"):
		d := p.str("Description.Value")
		if !p.has("Description.Value") {
			d = p.str("Value")
		}
		if err := checkDescription(d); err != nil {
			return err
		}
		img.description = d
		c.w.boolean("return", true)
		return nil
	case attr == "launchPermission" || attr == "":
		add, remove, err := permissionChanges(p, "LaunchPermission")
		if err != nil {
			return err
		}
		if len(add)+len(remove) == 0 {
			return errMissing("LaunchPermission")
		}
		if img.state == "disabled" && len(add) > 0 {
			return errorf("IncorrectState", "Image %s is disabled; it cannot be shared.", id)
		}
		applyPermissions(&img.public, img.launchUsers, add, remove)
		c.w.boolean("return", true)
		return nil
	case attr == "imdsSupport" || attr == "productCodes":
		c.w.boolean("return", true)
		return nil
	}
	return errInvalidValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
}

func (s *Sim) describeImageAttribute(c *call) *apiError {
	p := c.p
	id, err := p.required("ImageId")
	if err != nil {
		return err
	}
	attr, err := p.required("Attribute")
	if err != nil {
		return err
	}
	img, err := c.r.imageByID(id, c.now)
	if err != nil {
		return err
	}
	w := c.w
	w.el("imageId", id)
	value := func(name, v string) {
		w.open(name)
		w.el("value", v)
		w.close(name)
	}
	switch attr {
	case "launchPermission":
		if img.ownerID != AccountID {
			return errorf("AuthFailure", "Not authorized for image:%s", id)
		}
		writePermissions(w, "launchPermission", img.public, img.launchUsers)
	case "description":
		value("description", img.description)
	case "blockDeviceMapping":
		xmlList(w, "blockDeviceMapping", img.bdm, func(m imageBDM) {
			w.el("deviceName", m.deviceName)
			w.open("ebs")
			w.el("snapshotId", m.snapshotID)
			w.integer("volumeSize", m.volumeSize)
			w.boolean("deleteOnTermination", m.deleteOnTermination)
			w.el("volumeType", m.volumeType)
			w.boolean("encrypted", m.encrypted)
			w.close("ebs")
		})
	case "deregistrationProtection":
		value("deregistrationProtection", img.protectionString(c.now))
	case "lastLaunchedTime":
		if !img.lastLaunched.IsZero() {
			value("lastLaunchedTime", fmtTime(img.lastLaunched))
		} else {
			w.empty("lastLaunchedTime")
		}
	case "productCodes":
		w.empty("productCodes")
	case "bootMode":
		value("bootMode", "uefi-preferred")
	case "imdsSupport":
		value("imdsSupport", "v2.0")
	case "kernel", "ramdisk", "sriovNetSupport", "tpmSupport", "uefiData":
		w.empty(attr)
	default:
		return errInvalidValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return nil
}

// registerImage registers an image from existing snapshots. The image is
// available at once. Registering a second image from the snapshots of a
// first is how two images come to share a snapshot.
func (s *Sim) registerImage(c *call) *apiError {
	p := c.p
	name, desc, err := nameAndDescription(p)
	if err != nil {
		return err
	}
	if p.has("ImageLocation") {
		return errorf("InvalidParameterCombination", "Instance-store (S3 manifest) images are not supported; register EBS snapshots with BlockDeviceMapping.")
	}
	root := p.str("RootDeviceName")
	if root == "" {
		root = "/dev/xvda"
	}
	arch := p.str("Architecture")
	if arch == "" {
		arch = "x86_64"
	}
	if err := c.r.checkNameFree(name); err != nil {
		return err
	}
	specs, err := p.tagSpecs("image")
	if err != nil {
		return err
	}
	tags, err := applyTags(nil, tagsFor(specs, "image"))
	if err != nil {
		return err
	}
	var bdm []imageBDM
	hasRoot := false
	for _, n := range p.indexes("BlockDeviceMapping") {
		pre := member("BlockDeviceMapping", n)
		dev := p.str(pre + "DeviceName")
		if dev == "" {
			return errMissing(pre + "DeviceName")
		}
		if p.has(pre + "NoDevice") {
			continue
		}
		m := imageBDM{deviceName: dev, volumeType: p.str(pre + "Ebs.VolumeType"), deleteOnTermination: true}
		if m.volumeType == "" {
			m.volumeType = "gp3"
		}
		if p.has(pre + "Ebs.DeleteOnTermination") {
			d, err := p.boolean(pre + "Ebs.DeleteOnTermination")
			if err != nil {
				return err
			}
			m.deleteOnTermination = d
		}
		size, hasSize, err := p.integer(pre + "Ebs.VolumeSize")
		if err != nil {
			return err
		}
		if sid := p.str(pre + "Ebs.SnapshotId"); sid != "" {
			sn, err := c.r.snapshotByID(sid, c.now)
			if err != nil {
				return err
			}
			if sn.state != "completed" {
				return errorf("IncorrectState", "Snapshot %s is in state %s; it must be completed.", sid, sn.state)
			}
			if !hasSize {
				size = sn.size
			} else if size < sn.size {
				return errorf("InvalidBlockDeviceMapping", "Volume of size %dGB is smaller than snapshot '%s', expect size >= %dGB", size, sid, sn.size)
			}
			m.snapshotID, m.encrypted, m.kmsKeyID = sid, sn.encrypted, sn.kmsKeyID
		} else if !hasSize {
			return errorf("InvalidBlockDeviceMapping", "The block device mapping for %s needs a snapshot id or a volume size.", dev)
		}
		m.volumeSize = size
		hasRoot = hasRoot || dev == root
		bdm = append(bdm, m)
	}
	if !hasRoot {
		return errorf("InvalidBlockDeviceMapping", "The root device name %s has no EBS block device mapping with a snapshot.", root)
	}
	img := &image{
		seq: s.nextSeq(), id: s.newID("ami"), name: name, description: desc, ownerID: AccountID,
		state: "available", created: c.now, readyAt: c.now, launchUsers: map[string]bool{}, tags: tags,
		protection: "disabled", rootDevice: root, architecture: arch, bdm: bdm,
	}
	for _, m := range bdm {
		if sn, ok := c.r.snapshots[m.snapshotID]; ok {
			sn.usedBy[img.id] = true
		}
	}
	c.r.addImageLocked(img)
	c.w.el("imageId", img.id)
	return nil
}
