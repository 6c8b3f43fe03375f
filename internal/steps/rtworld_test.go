package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// The retention and publish tests build a world in the simulator through
// the real SDK (images made by CreateImage, launch templates, parameters,
// Auto Scaling groups), run the real handlers against it and then look at
// what is left, again through the SDK.

var (
	rtStart = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	rtHome  = "us-east-1"
	rtCopy  = "eu-west-1"
)

// rtBackoff keeps the SDK's retry loop but waits a millisecond per attempt.

type rtWorld struct {
	t       testing.TB
	ctx     context.Context
	sim     *ec2sim.Sim
	clock   *ec2sim.ManualClock
	clients *ec2x.Clients
	policy  rotation.Policy
	rot     rotation.Rotation
	hosts   map[string]string // region/instance → the instance images are made from
	seq     int
}

// newRTWorld starts a simulator in the home and copy regions with a policy
// "nightly" (policyJSON: the fields after the name, e.g.
// `"retention":{"keep":2}`). Images become available a minute after they
// are made; mk advances the clock for that.
func newRTWorld(t testing.TB, policyJSON string) *rtWorld {
	t.Helper()
	clock := ec2sim.NewManualClock(rtStart)
	sim := ec2sim.New(ec2sim.Options{Regions: []string{rtHome, rtCopy}, Clock: clock, ImageDelay: time.Minute, CopyDelay: time.Minute, Seed: 11})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       rtHome,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSIM", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	p, err := rotation.DecodePolicy([]byte(`{"name":"nightly",` + policyJSON + `}`))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	rot := rotation.NewRotation(rtStart, rotation.TriggerSchedule, rtStart)
	rot.Home = rtHome
	return &rtWorld{
		t: t, ctx: context.Background(), sim: sim, clock: clock,
		clients: ec2x.NewClients(cfg, ec2x.WithBackoff(fastBackoff{})),
		policy:  p, rot: rot, hosts: map[string]string{},
	}
}

func (w *rtWorld) ec2(region string) *ec2.Client { return w.clients.EC2(region) }

func (w *rtWorld) retention() *Retention {
	return NewRetention(w.clients, Env{Now: w.clock.Now})
}

func (w *rtWorld) publisher() *Publish { return NewPublish(w.clients, Env{Now: w.clock.Now}) }

// host is the instance images in region are made from (their tags say which
// instance they belong to; EC2 only needs some instance).
func (w *rtWorld) host(region, instance string) string {
	key := region + "/" + instance
	if id, ok := w.hosts[key]; ok {
		return id
	}
	// The image's instance itself, so that EC2's description of its
	// snapshots ("Created by CreateImage(i-…)") agrees with its tags, as
	// for every image amirotate makes. An instance that is not a valid id
	// (a test of bad tags) gets a generated host.
	spec := ec2sim.InstanceSpec{Tags: map[string]string{"Name": "image-host"}, Volumes: []int{8, 20}}
	if rotation.ValidInstanceID(instance) {
		spec.ID = instance
	}
	id, err := w.sim.RunInstance(region, spec)
	if err != nil {
		w.t.Fatalf("RunInstance: %v", err)
	}
	w.hosts[key] = id
	return id
}

// img describes an image to make.
type img struct {
	region   string // default home
	instance string // amirotate:instance-id
	daysAgo  int    // its rotation is this many days before the current one
	copy     bool   // a copy (source-image tags)
	policy   string // default the world's policy
	tags     map[string]string
	noTags   []string // amirotate tags to leave out
	pending  bool     // leave it pending (make it last: later mk calls advance the clock)
	failed   bool     // let it end failed
	name     string   // default an amirotate name
	fast     bool     // do not read the snapshot ids back (benchmarks)
	current  bool     // an image of the current rotation (w.rot)
}

// mk makes the image through CreateImage, with its tags on the image and
// its snapshots, and returns its id and snapshot ids.
func (w *rtWorld) mk(s img) (string, []string) {
	w.t.Helper()
	if s.region == "" {
		s.region = rtHome
	}
	if s.policy == "" {
		s.policy = w.policy.Name
	}
	// Each image gets its own rotation minute (later made, later minute)
	// so its name is exactly the one its tags give, as amirotate names it.
	w.seq++
	rotID := rotation.RotationID(rtStart.AddDate(0, 0, -s.daysAgo).Add(-time.Duration(1000-w.seq) * time.Minute))
	if s.current {
		rotID = w.rot.ID
	}
	tags := map[string]string{
		rotation.TagPolicy:     s.policy,
		rotation.TagInstanceID: s.instance,
		rotation.TagRotation:   rotID,
		rotation.TagCreatedBy:  rotation.CreatedBy,
	}
	var source string
	if s.copy {
		source = w.copySource()
		tags[rotation.TagSourceImage] = source
		tags[rotation.TagSourceRegion] = rtHome
	}
	for _, k := range s.noTags {
		delete(tags, k)
	}
	maps.Copy(tags, s.tags)
	if s.name == "" {
		s.name = rotation.ImageName(s.policy, s.instance, rotID)
	}
	specs := []types.TagSpecification{
		{ResourceType: types.ResourceTypeImage, Tags: ec2Tags(tags)},
		{ResourceType: types.ResourceTypeSnapshot, Tags: ec2Tags(tags)},
	}
	var id string
	if s.copy {
		// A real copy, so that EC2 describes its snapshots as copies of
		// the source its tags name.
		out, err := w.ec2(s.region).CopyImage(w.ctx, &ec2.CopyImageInput{SourceRegion: aws.String(rtHome),
			SourceImageId: aws.String(source), Name: aws.String(s.name), TagSpecifications: specs})
		if err != nil {
			w.t.Fatalf("CopyImage: %v", err)
		}
		id = aws.ToString(out.ImageId)
	} else {
		host := w.host(s.region, s.instance)
		if s.failed {
			w.sim.FailNextImage(s.region, host, "simulated failure")
		}
		out, err := w.ec2(s.region).CreateImage(w.ctx, &ec2.CreateImageInput{
			InstanceId: aws.String(host), Name: aws.String(s.name), TagSpecifications: specs})
		if err != nil {
			w.t.Fatalf("CreateImage: %v", err)
		}
		id = aws.ToString(out.ImageId)
	}
	if !s.pending {
		w.clock.Advance(2 * time.Minute)
	}
	if s.fast {
		return id, nil
	}
	return id, w.snapshotsOf(s.region, id)
}

// copySource makes an untagged image in the home region for mk to copy
// (not amirotate's: it never counts in retention).
func (w *rtWorld) copySource() string {
	w.t.Helper()
	out, err := w.ec2(rtHome).CreateImage(w.ctx, &ec2.CreateImageInput{
		InstanceId: aws.String(w.host(rtHome, "copy-source")), Name: aws.String(fmt.Sprintf("copy-source-%d", w.seq))})
	if err != nil {
		w.t.Fatalf("CreateImage: %v", err)
	}
	w.clock.Advance(2 * time.Minute)
	return aws.ToString(out.ImageId)
}

func ec2Tags(m map[string]string) []types.Tag {
	var out []types.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// describe returns the image, or nil when it does not exist.
func (w *rtWorld) describe(region, id string) *types.Image {
	w.t.Helper()
	out, err := w.ec2(region).DescribeImages(w.ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}, IncludeDisabled: aws.Bool(true)})
	if ec2x.IsNotFound(err) {
		return nil
	}
	if err != nil {
		w.t.Fatalf("DescribeImages %s: %v", id, err)
	}
	if len(out.Images) == 0 {
		return nil
	}
	return &out.Images[0]
}

func (w *rtWorld) snapshotsOf(region, id string) []string {
	w.t.Helper()
	im := w.describe(region, id)
	if im == nil {
		w.t.Fatalf("image %s not found", id)
	}
	var snaps []string
	for _, b := range im.BlockDeviceMappings {
		if b.Ebs != nil && b.Ebs.SnapshotId != nil {
			snaps = append(snaps, *b.Ebs.SnapshotId)
		}
	}
	return snaps
}

func (w *rtWorld) imageExists(region, id string) bool { return w.describe(region, id) != nil }

func (w *rtWorld) snapshotExists(region, id string) bool {
	w.t.Helper()
	out, err := w.ec2(region).DescribeSnapshots(w.ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
	if ec2x.IsNotFound(err) {
		return false
	}
	if err != nil {
		w.t.Fatalf("DescribeSnapshots %s: %v", id, err)
	}
	return len(out.Snapshots) > 0
}

// requireIntact fails unless the image and all its snapshots still exist.
func (w *rtWorld) requireIntact(region, id string, snaps []string, why string) {
	w.t.Helper()
	if !w.imageExists(region, id) {
		w.t.Fatalf("%s: image %s was deleted", why, id)
	}
	for _, s := range snaps {
		if !w.snapshotExists(region, s) {
			w.t.Fatalf("%s: snapshot %s of image %s was deleted", why, s, id)
		}
	}
}

// requireGone fails unless the image and all its snapshots are gone.
func (w *rtWorld) requireGone(region, id string, snaps []string, why string) {
	w.t.Helper()
	if w.imageExists(region, id) {
		w.t.Fatalf("%s: image %s still exists", why, id)
	}
	for _, s := range snaps {
		if w.snapshotExists(region, s) {
			w.t.Fatalf("%s: snapshot %s of deleted image %s was left behind", why, s, id)
		}
	}
}

// batch is a batch of instances whose new images (one per region, source
// in home and copies) are in the given state.
func (w *rtWorld) batch(states map[string]map[string]string) Batch {
	b := Batch{Policy: w.policy, Rotation: w.rot}
	for _, inst := range slices.Sorted(maps.Keys(states)) {
		b.InstanceIDs = append(b.InstanceIDs, inst)
		for _, region := range slices.Sorted(maps.Keys(states[inst])) {
			rec := rotation.Record{InstanceID: inst, Region: region, State: states[inst][region]}
			if region != rtHome {
				rec.SourceImageID = "ami-0123456789abcdef0"
			}
			b.Images = append(b.Images, rec)
		}
	}
	return b
}

// rotated makes today's images of instance (source, and a copy when the
// policy copies) and returns the batch records of them, available.
func (w *rtWorld) rotated(instance string) []rotation.Record {
	w.t.Helper()
	src, _ := w.mk(img{instance: instance, current: true})
	recs := []rotation.Record{{InstanceID: instance, Region: rtHome, ImageID: src, State: rotation.StateAvailable}}
	for _, c := range w.policy.CopyTo {
		cp, _ := w.mk(img{instance: instance, region: c.Region, copy: true, current: true})
		recs = append(recs, rotation.Record{InstanceID: instance, Region: c.Region, ImageID: cp, SourceImageID: src, State: rotation.StateAvailable})
	}
	return recs
}

func (w *rtWorld) batchOf(recs ...[]rotation.Record) Batch {
	b := Batch{Policy: w.policy, Rotation: w.rot}
	for _, rs := range recs {
		for _, r := range rs {
			if !slices.Contains(b.InstanceIDs, r.InstanceID) {
				b.InstanceIDs = append(b.InstanceIDs, r.InstanceID)
			}
			b.Images = append(b.Images, r)
		}
	}
	return b
}

func (w *rtWorld) runRetention(b Batch) Batch {
	w.t.Helper()
	out, err := w.retention().Handle(w.ctx, b)
	if err != nil {
		w.t.Fatalf("retention: %v", err)
	}
	return out
}

// scopeOf returns the report of instance in region (zero when none).
func scopeOf(reps []rotation.ScopeReport, instance, region string) rotation.ScopeReport {
	for _, r := range reps {
		if r.InstanceID == instance && r.Region == region {
			return r
		}
	}
	return rotation.ScopeReport{}
}

func deletedIDs(reps []rotation.ScopeReport) []string {
	var ids []string
	for _, r := range reps {
		ids = append(ids, r.Deleted...)
	}
	slices.Sort(ids)
	return ids
}

func failures(reps []rotation.ScopeReport) []string {
	var out []string
	for _, r := range reps {
		for id, e := range r.Failed {
			out = append(out, id+": "+e)
		}
		for id, e := range r.SnapshotsFailed {
			out = append(out, id+": "+e)
		}
	}
	return out
}

// mutations counts the calls that change something.
func mutations(st ec2sim.Stats) map[string]int {
	out := map[string]int{}
	for _, actions := range st.Calls {
		for a, n := range actions {
			name := a
			if i := strings.Index(a, ":"); i >= 0 {
				name = a[i+1:]
			}
			if strings.HasPrefix(name, "Describe") || strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List") {
				continue
			}
			out[a] += n
		}
	}
	return out
}

// Launch templates, parameters and groups, through the SDK.

// template makes a launch template whose versions launch images[i]
// (version i+1), with the given default version and tags.
func (w *rtWorld) template(region, name string, images []string, defaultVersion int, tags map[string]string) string {
	w.t.Helper()
	cl := w.ec2(region)
	in := &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(images[0]), InstanceType: types.InstanceTypeT3Micro},
	}
	if len(tags) > 0 {
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate, Tags: ec2Tags(tags)}}
	}
	out, err := cl.CreateLaunchTemplate(w.ctx, in)
	if err != nil {
		w.t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	id := aws.ToString(out.LaunchTemplate.LaunchTemplateId)
	for _, im := range images[1:] {
		if _, err := cl.CreateLaunchTemplateVersion(w.ctx, &ec2.CreateLaunchTemplateVersionInput{
			LaunchTemplateId:   aws.String(id),
			SourceVersion:      aws.String("1"),
			LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(im)},
		}); err != nil {
			w.t.Fatalf("CreateLaunchTemplateVersion: %v", err)
		}
	}
	if defaultVersion != 1 {
		if _, err := cl.ModifyLaunchTemplate(w.ctx, &ec2.ModifyLaunchTemplateInput{
			LaunchTemplateId: aws.String(id), DefaultVersion: aws.String(fmt.Sprint(defaultVersion)),
		}); err != nil {
			w.t.Fatalf("ModifyLaunchTemplate: %v", err)
		}
	}
	return id
}

// defaultImage returns the default version number and image of a template.
func (w *rtWorld) defaultImage(region, id string) (int64, string, types.ResponseLaunchTemplateData) {
	w.t.Helper()
	out, err := w.ec2(region).DescribeLaunchTemplateVersions(w.ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: aws.String(id), Versions: []string{"$Default"},
	})
	if err != nil || len(out.LaunchTemplateVersions) != 1 {
		w.t.Fatalf("DescribeLaunchTemplateVersions %s: %v", id, err)
	}
	v := out.LaunchTemplateVersions[0]
	return aws.ToInt64(v.VersionNumber), aws.ToString(v.LaunchTemplateData.ImageId), *v.LaunchTemplateData
}

func (w *rtWorld) parameter(region, name string) (string, int64) {
	w.t.Helper()
	out, err := w.clients.SSM(region).GetParameter(w.ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	var nf interface{ ErrorCode() string }
	if errors.As(err, &nf) && nf.ErrorCode() == "ParameterNotFound" {
		return "", 0
	}
	if err != nil {
		w.t.Fatalf("GetParameter %s: %v", name, err)
	}
	return aws.ToString(out.Parameter.Value), out.Parameter.Version
}

func (w *rtWorld) group(region, name string, mutate func(*autoscaling.CreateAutoScalingGroupInput)) {
	w.t.Helper()
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		MinSize:              aws.Int32(0),
		MaxSize:              aws.Int32(2),
		AvailabilityZones:    []string{region + "a"},
	}
	mutate(in)
	if _, err := w.clients.AutoScaling(region).CreateAutoScalingGroup(w.ctx, in); err != nil {
		w.t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
}

func ltSpec(id, version string) *asgtypes.LaunchTemplateSpecification {
	return &asgtypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(id), Version: aws.String(version)}
}

func (w *rtWorld) launchConfiguration(region, name, image string) {
	w.t.Helper()
	if _, err := w.clients.AutoScaling(region).CreateLaunchConfiguration(w.ctx, &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName: aws.String(name), ImageId: aws.String(image), InstanceType: aws.String("t3.micro"),
	}); err != nil {
		w.t.Fatalf("CreateLaunchConfiguration: %v", err)
	}
}

// launch runs an instance from image (stopped when asked).
func (w *rtWorld) launch(region, image string, stopped bool) string {
	w.t.Helper()
	id, err := w.sim.RunInstance(region, ec2sim.InstanceSpec{ImageID: image, Stopped: stopped})
	if err != nil {
		w.t.Fatalf("RunInstance from %s: %v", image, err)
	}
	return id
}

// register makes an image from existing snapshots (RegisterImage): the way
// two images come to share a snapshot.
func (w *rtWorld) register(region, name string, snaps []string, tags map[string]string) string {
	w.t.Helper()
	in := &ec2.RegisterImageInput{Name: aws.String(name), RootDeviceName: aws.String("/dev/xvda")}
	for i, s := range snaps {
		in.BlockDeviceMappings = append(in.BlockDeviceMappings, types.BlockDeviceMapping{
			DeviceName: aws.String(fmt.Sprintf("/dev/xvd%c", 'a'+i)),
			Ebs:        &types.EbsBlockDevice{SnapshotId: aws.String(s)},
		})
	}
	if len(tags) > 0 {
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: ec2Tags(tags)}}
	}
	out, err := w.ec2(region).RegisterImage(w.ctx, in)
	if err != nil {
		w.t.Fatalf("RegisterImage: %v", err)
	}
	return aws.ToString(out.ImageId)
}

// managedTags are the tags amirotate puts on an image of instance made
// daysAgo days before the current rotation.
func (w *rtWorld) managedTags(instance string, daysAgo int) map[string]string {
	return map[string]string{
		rotation.TagPolicy:     w.policy.Name,
		rotation.TagInstanceID: instance,
		rotation.TagRotation:   rotation.RotationID(rtStart.AddDate(0, 0, -daysAgo)),
		rotation.TagCreatedBy:  rotation.CreatedBy,
	}
}

// deregisterKeepingSnapshots deregisters an image and leaves its snapshots:
// what an interrupted deletion (or a person) leaves behind.
func (w *rtWorld) deregisterKeepingSnapshots(region, id string) {
	w.t.Helper()
	if _, err := w.ec2(region).DeregisterImage(w.ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)}); err != nil {
		w.t.Fatalf("DeregisterImage: %v", err)
	}
}

func (w *rtWorld) inject(f ec2sim.Fault) {
	w.t.Helper()
	if err := w.sim.Inject(f); err != nil {
		w.t.Fatalf("Inject: %v", err)
	}
}

// lambdaResponseErrorType invokes handler the way the Lambda runtime does
// and returns the errorType of the response, or "" when it succeeded.
func lambdaResponseErrorType(t *testing.T, handler any, payload any) (string, string) {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	// The handler's own error must be an unwrapped value of the named type.
	if _, err := lambda.NewHandler(handler).Invoke(context.Background(), raw); err != nil && errors.Unwrap(err) != nil {
		t.Errorf("handler returned a wrapped error %T; Step Functions would see only the wrapper's name", err)
	}
	// NewFunction is the runtime's own invoke path: it builds the response
	// (errorType included) exactly as the Lambda service receives it.
	var resp messages.InvokeResponse
	req := &messages.InvokeRequest{Payload: raw, Deadline: messages.InvokeRequest_Timestamp{Seconds: time.Now().Add(time.Minute).Unix()}}
	if err := lambda.NewFunction(lambda.NewHandler(handler)).Invoke(req, &resp); err != nil { //nolint:staticcheck // see above
		t.Fatal(err)
	}
	if resp.Error == nil {
		return "", ""
	}
	return resp.Error.Type, resp.Error.Message
}
