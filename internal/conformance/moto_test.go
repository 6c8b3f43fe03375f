package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

const installMoto = "moto_server not found on PATH: it ships with the machine's Python (moto 5.2.1 with its server extra)"

// diffHome and diffDest are the comparison's home and copy regions (see
// simRegions).
const diffHome, diffDest = "ap-southeast-2", "ap-northeast-1"

// endpoint is one EC2 + SSM implementation under comparison. Ids differ
// between implementations, so each endpoint maps the ids it hands out to
// labels ("image", "copy", ...) and observations show labels.
type endpoint struct {
	name   string
	url    string
	labels map[string]string // id → label
	ids    map[string]string // label → id
}

// config is a plain aws.Config (not LoadDefaultConfig): no environment
// variable or config file can redirect the clients elsewhere. An answer is
// compared as given: the only retry is the SDK's own for a connection reset
// before the answer was read (a TCP RST on a loaded machine shows as "use of
// closed network connection", aws-sdk-go-v2#2737), never for an error the
// service returned. A new connection per call, because moto's development
// server may close an idle keep-alive connection just as the client reuses it.
func (e *endpoint) config(region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.Retryables = []retry.IsErrorRetryable{retry.RetryableConnectionError{}}
				o.RateLimiter = ratelimit.None
			})
		},
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

func (e *endpoint) ec2(region string) *ec2.Client { return ec2.NewFromConfig(e.config(region)) }
func (e *endpoint) ssm(region string) *ssm.Client { return ssm.NewFromConfig(e.config(region)) }

func (e *endpoint) label(label, id string) {
	e.labels[id] = label
	e.ids[label] = id
}

var awsID = regexp.MustCompile(`\b(ami|snap|i|vol|lt|r)-[0-9a-f]{8,17}\b`)

// norm replaces the ids in s by their labels.
func (e *endpoint) norm(s string) string {
	return awsID.ReplaceAllStringFunc(s, func(id string) string {
		if l, ok := e.labels[id]; ok {
			return "<" + l + ">"
		}
		return "<some " + strings.SplitN(id, "-", 2)[0] + ">"
	})
}

// obs is what a step observed: plain JSON-able values, ids as labels.
type obs map[string]any

// deviation is a field in which moto is known to differ from EC2 (and the
// simulator): both sides must show exactly their stated value, so the test
// notices when either changes.
type deviation struct {
	why       string
	sim, moto any
}

type diffStep struct {
	name string
	run  func(ctx context.Context, e *endpoint) (obs, error)
	// deviations by observed field ("error" for the error code).
	deviations map[string]deviation
}

// TestMoto_SameScenarioSameAnswers runs one scenario through the AWS SDK
// for Go against `amirotate sim` and against moto_server, restricted to the
// actions both implement, and compares what each step observes: fields,
// states, tags, error codes, with ids mapped to labels and timestamps to
// their format.
func TestMoto_SameScenarioSameAnswers(t *testing.T) {
	t.Parallel()
	motoURL := startMoto(t)
	run := fmt.Sprintf("diff-%d", time.Now().UnixNano()%1_000_000)
	steps := scenario(run)
	sim := &endpoint{name: "sim", url: shared.url, labels: map[string]string{}, ids: map[string]string{}}
	moto := &endpoint{name: "moto", url: motoURL, labels: map[string]string{}, ids: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range steps {
		simObs := observe(ctx, sim, s)
		motoObs := observe(ctx, moto, s)
		compare(t, s, simObs, motoObs)
	}
}

func observe(ctx context.Context, e *endpoint, s diffStep) map[string]any {
	o, err := s.run(ctx, e)
	if err != nil {
		o = obs{"error": errCode(err)}
	}
	// Round-trip through JSON so that numbers, slices and maps compare alike.
	raw, err := json.Marshal(o)
	if err != nil {
		return map[string]any{"error": "unencodable observation: " + err.Error()}
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(e.norm(string(raw))), &m)
	return m
}

func compare(t *testing.T, s diffStep, simObs, motoObs map[string]any) {
	t.Helper()
	fields := map[string]bool{}
	for k := range simObs {
		fields[k] = true
	}
	for k := range motoObs {
		fields[k] = true
	}
	for k := range s.deviations {
		fields[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		sv, mv := simObs[k], motoObs[k]
		if d, ok := s.deviations[k]; ok {
			if !sameJSON(sv, d.sim) {
				t.Errorf("%s: %s: simulator gave %s, want %s", s.name, k, js(sv), js(d.sim))
			}
			if !sameJSON(mv, d.moto) {
				t.Errorf("%s: %s: moto gave %s, its known deviation (%s) says %s; update the deviation list", s.name, k, js(mv), d.why, js(d.moto))
			}
			continue
		}
		if !reflect.DeepEqual(sv, mv) {
			t.Errorf("%s: %s differs:\n  sim:  %s\n  moto: %s", s.name, k, js(sv), js(mv))
		}
	}
}

func sameJSON(got, want any) bool {
	var w any
	raw, _ := json.Marshal(want)
	_ = json.Unmarshal(raw, &w)
	return reflect.DeepEqual(got, w)
}

func js(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

// errCode names an error as the comparison sees it: the API error code, and
// the HTTP status for server errors (moto answers 500 for what it lacks).
func errCode(err error) string {
	var re *awshttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	if status >= 500 {
		return fmt.Sprintf("HTTP %d", status)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

func startMoto(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("moto_server")
	if err != nil {
		path, err = exec.LookPath(filepath.Join(pyenvRoot(), "shims", "moto_server"))
	}
	if err != nil {
		msg := installMoto
		if inCI() {
			msg += " (CI=true: the comparison must run)"
		}
		t.Fatal(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = nil, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting moto_server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHTTP(url+"/moto-api/", 30*time.Second); err != nil {
		t.Fatalf("moto_server: %v", err)
	}
	return url
}

// waitAvailable waits until image is available on the shared simulator.
func waitAvailable(t *testing.T, region, image string) {
	t.Helper()
	e := &endpoint{url: shared.url}
	if err := waitImages(context.Background(), e.ec2(region), image); err != nil {
		t.Fatalf("waiting for %s in %s: %v", image, region, err)
	}
}

func waitImages(ctx context.Context, c *ec2.Client, ids ...string) error {
	w := ec2.NewImageAvailableWaiter(c, func(o *ec2.ImageAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 500*time.Millisecond
	})
	return w.Wait(ctx, &ec2.DescribeImagesInput{ImageIds: ids}, time.Minute)
}

func tagsOf(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		if !strings.HasPrefix(aws.ToString(t.Key), "aws:") {
			m[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return m
}

func ec2Tags(kv ...string) []types.Tag {
	var tags []types.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		tags = append(tags, types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return tags
}

func filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

func imageIDs(images []types.Image) []string {
	var ids []string
	for _, img := range images {
		ids = append(ids, aws.ToString(img.ImageId))
	}
	slices.Sort(ids)
	return ids
}

// scenario is the comparison, step by step. Names carry run so that a
// rerun against the same simulator does not collide.
func scenario(run string) []diffStep {
	golden := run + "-golden"
	param := "/" + run + "/latest"
	return []diffStep{
		{name: "DescribeImages --owners amazon", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeImages(ctx, &ec2.DescribeImagesInput{
				Owners: []string{"amazon"}, Filters: []types.Filter{filter("state", "available")},
			})
			if err != nil {
				return nil, err
			}
			o := obs{"nonEmpty": len(out.Images) > 0, "allAvailablePublicAmazon": true}
			var base *types.Image
			for i, img := range out.Images {
				if img.State != types.ImageStateAvailable || !aws.ToBool(img.Public) || aws.ToString(img.ImageOwnerAlias) != "amazon" {
					o["allAvailablePublicAmazon"] = false
				}
				if img.RootDeviceType == types.DeviceTypeEbs && img.Architecture == types.ArchitectureValuesX8664 && img.Platform == "" &&
					(base == nil || aws.ToString(img.ImageId) < aws.ToString(base.ImageId)) {
					base = &out.Images[i]
				}
			}
			if base == nil {
				return nil, errors.New("no x86_64 EBS Linux image owned by amazon")
			}
			e.label("base", aws.ToString(base.ImageId))
			return o, nil
		}},
		{name: "RunInstances with tags and a data volume", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).RunInstances(ctx, &ec2.RunInstancesInput{
				ImageId: aws.String(e.ids["base"]), InstanceType: types.InstanceTypeT3Micro,
				MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				BlockDeviceMappings: []types.BlockDeviceMapping{{
					DeviceName: aws.String("/dev/sdf"),
					Ebs:        &types.EbsBlockDevice{VolumeSize: aws.Int32(50), VolumeType: types.VolumeTypeGp3, DeleteOnTermination: aws.Bool(true)},
				}},
				TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: ec2Tags("Name", "golden", "amirotate:policy", run)}},
			})
			if err != nil {
				return nil, err
			}
			if len(out.Instances) != 1 {
				return obs{"instances": len(out.Instances)}, nil
			}
			in := out.Instances[0]
			e.label("instance", aws.ToString(in.InstanceId))
			return obs{"instances": 1, "imageId": aws.ToString(in.ImageId), "instanceType": string(in.InstanceType),
				"state": string(in.State.Name), "tags": tagsOf(in.Tags)}, nil
		}},
		{name: "DescribeInstances by tag and state", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			w := ec2.NewInstanceRunningWaiter(c, func(o *ec2.InstanceRunningWaiterOptions) {
				o.MinDelay, o.MaxDelay = 100*time.Millisecond, 500*time.Millisecond
			})
			if err := w.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{e.ids["instance"]}}, time.Minute); err != nil {
				return nil, err
			}
			out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
				filter("tag:amirotate:policy", run), filter("instance-state-name", "running"),
			}})
			if err != nil {
				return nil, err
			}
			var ids, devices []string
			o := obs{}
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					ids = append(ids, aws.ToString(in.InstanceId))
					for _, m := range in.BlockDeviceMappings {
						devices = append(devices, aws.ToString(m.DeviceName))
					}
					o["rootDeviceType"] = string(in.RootDeviceType)
					o["tags"] = tagsOf(in.Tags)
				}
			}
			slices.Sort(devices)
			o["ids"], o["devices"] = ids, devices
			return o, nil
		}, deviations: map[string]deviation{
			"devices": {why: "moto lists only the extra volumes in an instance's block device mappings, not the root volume", sim: []string{"/dev/sdf", "/dev/xvda"}, moto: []string{"/dev/sdf"}},
		}},
		{name: "DescribeInstances paginated by the SDK paginator", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			for i := 0; i < 5; i++ {
				if _, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
					ImageId: aws.String(e.ids["base"]), InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
					TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: ec2Tags("amirotate:policy", run+"-many")}},
				}); err != nil {
					return nil, err
				}
			}
			pages, seen := 0, map[string]bool{}
			p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{
				MaxResults: aws.Int32(5), Filters: []types.Filter{filter("tag:amirotate:policy", run, run+"-many")},
			})
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					return nil, err
				}
				pages++
				for _, r := range out.Reservations {
					for _, in := range r.Instances {
						seen[aws.ToString(in.InstanceId)] = true
					}
				}
			}
			return obs{"pages": pages, "instances": len(seen)}, nil
		}},
		{name: "CreateImage --no-reboot with image tags, until available", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			out, err := c.CreateImage(ctx, &ec2.CreateImageInput{
				InstanceId: aws.String(e.ids["instance"]), Name: aws.String(golden), Description: aws.String("golden image"),
				NoReboot:          aws.Bool(true),
				TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: ec2Tags("Role", "golden", "amirotate:policy", run)}},
			})
			if err != nil {
				return nil, err
			}
			e.label("image", aws.ToString(out.ImageId))
			if err := waitImages(ctx, c, aws.ToString(out.ImageId)); err != nil {
				return nil, err
			}
			return obs{"created": true}, nil
		}},
		{name: "DescribeImages by id", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{e.ids["image"]}})
			if err != nil {
				return nil, err
			}
			if len(out.Images) != 1 {
				return obs{"images": len(out.Images)}, nil
			}
			img := out.Images[0]
			var snaps []string
			for _, m := range img.BlockDeviceMappings {
				if m.Ebs != nil && m.Ebs.SnapshotId != nil {
					snaps = append(snaps, aws.ToString(m.Ebs.SnapshotId))
				}
			}
			if len(snaps) > 0 {
				e.label("snapshot", snaps[0])
			}
			return obs{"imageId": aws.ToString(img.ImageId), "name": aws.ToString(img.Name), "description": aws.ToString(img.Description),
				"state": string(img.State), "ownerId": aws.ToString(img.OwnerId), "public": aws.ToBool(img.Public),
				"imageType": string(img.ImageType), "rootDeviceType": string(img.RootDeviceType),
				"creationDateFormat": creationDate.MatchString(aws.ToString(img.CreationDate)),
				"tags":               tagsOf(img.Tags), "snapshots": len(snaps)}, nil
		}, deviations: map[string]deviation{
			"snapshots":      {why: "moto makes one 15 GiB snapshot per image whatever the instance's volumes", sim: 2, moto: 1},
			"rootDeviceType": {why: "moto reports a created image's root device type as the snapshot's volume type", sim: "ebs", moto: "standard"},
		}},
		{name: "DescribeImages --owners self with filters", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			o := obs{}
			for key, f := range map[string][]types.Filter{
				"byName":        {filter("name", golden)},
				"byNamePattern": {filter("name", run+"-gold*")},
				"byTag":         {filter("tag:Role", "golden"), filter("tag:amirotate:policy", run)},
				"byTagKey":      {filter("tag-key", "Role"), filter("name", golden)},
				"pendingByName": {filter("name", golden), filter("state", "pending")},
			} {
				out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: f})
				if err != nil {
					return nil, err
				}
				o[key] = imageIDs(out.Images)
			}
			return o, nil
		}},
		{name: "CreateImage with a name in use", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			out, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(e.ids["instance"]), Name: aws.String(golden), NoReboot: aws.Bool(true)})
			if err != nil {
				return nil, err
			}
			// Accepted (moto): remove the duplicate so that later steps see the same images.
			_, derr := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: out.ImageId})
			return obs{"created": true}, derr
		}, deviations: map[string]deviation{
			"error":   {why: "moto accepts duplicate AMI names", sim: "InvalidAMIName.Duplicate", moto: nil},
			"created": {why: "moto accepts duplicate AMI names", sim: nil, moto: true},
		}},
		{name: "CreateImage with snapshot tags", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			out, err := c.CreateImage(ctx, &ec2.CreateImageInput{
				InstanceId: aws.String(e.ids["instance"]), Name: aws.String(run + "-snaptags"), NoReboot: aws.Bool(true),
				TagSpecifications: []types.TagSpecification{
					{ResourceType: types.ResourceTypeImage, Tags: ec2Tags("Role", "snaptags")},
					{ResourceType: types.ResourceTypeSnapshot, Tags: ec2Tags("Role", "snaptags")},
				},
			})
			if err != nil {
				return nil, err
			}
			snaps, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []types.Filter{filter("tag:Role", "snaptags")}})
			if err != nil {
				return nil, err
			}
			_, err = c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: out.ImageId})
			return obs{"taggedSnapshots": len(snaps.Snapshots)}, err
		}, deviations: map[string]deviation{
			"error":           {why: "moto answers CreateImage with a snapshot TagSpecification with HTTP 500", sim: nil, moto: "HTTP 500"},
			"taggedSnapshots": {why: "moto answers CreateImage with a snapshot TagSpecification with HTTP 500", sim: 2, moto: nil},
		}},
		{name: "CreateTags and DescribeTags", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{
				Resources: []string{e.ids["image"], e.ids["snapshot"]}, Tags: ec2Tags("Team", "platform", "Empty", ""),
			}); err != nil {
				return nil, err
			}
			out, err := c.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{filter("resource-id", e.ids["image"], e.ids["snapshot"])}})
			if err != nil {
				return nil, err
			}
			var tags []string
			for _, td := range out.Tags {
				tags = append(tags, fmt.Sprintf("%s %s %s=%s", aws.ToString(td.ResourceId), td.ResourceType, aws.ToString(td.Key), aws.ToString(td.Value)))
			}
			slices.Sort(tags)
			return obs{"tags": tags}, nil
		}},
		{name: "DeleteTags by key", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{e.ids["image"]}, Tags: []types.Tag{{Key: aws.String("Empty")}}}); err != nil {
				return nil, err
			}
			out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{e.ids["image"]}})
			if err != nil || len(out.Images) != 1 {
				return obs{"images": len(out.Images)}, err
			}
			return obs{"tags": tagsOf(out.Images[0].Tags)}, nil
		}},
		{name: "DescribeSnapshots by tag", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{
				OwnerIds: []string{"self"}, Filters: []types.Filter{filter("tag:Team", "platform")},
			})
			if err != nil {
				return nil, err
			}
			var snaps []string
			o := obs{}
			for _, s := range out.Snapshots {
				snaps = append(snaps, aws.ToString(s.SnapshotId))
				o["ownerId"], o["encrypted"], o["tags"] = aws.ToString(s.OwnerId), aws.ToBool(s.Encrypted), tagsOf(s.Tags)
			}
			o["snapshots"] = snaps
			return o, nil
		}},
		{name: "DeleteSnapshot of a snapshot in use", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(e.ids["snapshot"])})
			return obs{"deleted": true}, err
		}},
		{name: "DescribeImages of an unknown id", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-0000000000000000f"}})
			return obs{}, err
		}},
		{name: "DescribeImages of a malformed id", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-xyz"}})
			return obs{}, err
		}, deviations: map[string]deviation{
			"error": {why: "moto does not check the id's format", sim: "InvalidAMIID.Malformed", moto: "InvalidAMIID.NotFound"},
		}},
		{name: "CreateTags with DryRun", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).CreateTags(ctx, &ec2.CreateTagsInput{DryRun: aws.Bool(true), Resources: []string{e.ids["image"]}, Tags: ec2Tags("x", "y")})
			return obs{}, err
		}},
		{name: "CopyImage with CopyImageTags, until available", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffDest)
			in := &ec2.CopyImageInput{
				SourceRegion: aws.String(diffHome), SourceImageId: aws.String(e.ids["image"]),
				Name: aws.String(golden), Description: aws.String("golden copy"),
				CopyImageTags: aws.Bool(true), ClientToken: aws.String(run + "-copy"),
			}
			out, err := c.CopyImage(ctx, in)
			if err != nil {
				return nil, err
			}
			e.label("copy", aws.ToString(out.ImageId))
			again, err := c.CopyImage(ctx, in)
			if err != nil {
				return nil, err
			}
			if err := waitImages(ctx, c, aws.ToString(out.ImageId)); err != nil {
				return nil, err
			}
			return obs{"retrySameToken": aws.ToString(again.ImageId)}, nil
		}, deviations: map[string]deviation{
			"retrySameToken": {why: "moto ignores CopyImage's ClientToken: a retry makes a second copy", sim: "<copy>", moto: "<some ami>"},
		}},
		{name: "DescribeImages of the copy", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffDest).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{e.ids["copy"]}})
			if err != nil || len(out.Images) != 1 {
				return obs{"images": len(out.Images)}, err
			}
			img := out.Images[0]
			return obs{"name": aws.ToString(img.Name), "description": aws.ToString(img.Description), "state": string(img.State),
				"tags": tagsOf(img.Tags), "sourceImageId": aws.ToString(img.SourceImageId), "sourceImageRegion": aws.ToString(img.SourceImageRegion)}, nil
		}, deviations: map[string]deviation{
			"tags":              {why: "moto does not copy tags (CopyImageTags)", sim: map[string]string{"Role": "golden", "amirotate:policy": run, "Team": "platform"}, moto: map[string]string{}},
			"sourceImageId":     {why: "moto does not record a copy's source", sim: "<image>", moto: ""},
			"sourceImageRegion": {why: "moto does not record a copy's source", sim: diffHome, moto: ""},
		}},
		{name: "CreateLaunchTemplate tracking the instance", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
				LaunchTemplateName: aws.String(run),
				LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(e.ids["base"]), InstanceType: types.InstanceTypeT3Micro},
				TagSpecifications:  []types.TagSpecification{{ResourceType: types.ResourceTypeLaunchTemplate, Tags: ec2Tags("amirotate:track", e.ids["instance"])}},
			})
			if err != nil {
				return nil, err
			}
			lt := out.LaunchTemplate
			e.label("template", aws.ToString(lt.LaunchTemplateId))
			return obs{"name": aws.ToString(lt.LaunchTemplateName), "default": aws.ToInt64(lt.DefaultVersionNumber), "latest": aws.ToInt64(lt.LatestVersionNumber)}, nil
		}},
		{name: "CreateLaunchTemplate with a name in use", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
				LaunchTemplateName: aws.String(run),
				LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(e.ids["base"])},
			})
			return obs{}, err
		}},
		{name: "CreateLaunchTemplateVersion from version 1", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
				LaunchTemplateId: aws.String(e.ids["template"]), SourceVersion: aws.String("1"),
				LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: aws.String(e.ids["image"])},
			})
			if err != nil {
				return nil, err
			}
			v := out.LaunchTemplateVersion
			return obs{"version": aws.ToInt64(v.VersionNumber), "default": aws.ToBool(v.DefaultVersion),
				"imageId": aws.ToString(v.LaunchTemplateData.ImageId), "instanceType": string(v.LaunchTemplateData.InstanceType)}, nil
		}, deviations: map[string]deviation{
			"instanceType": {why: "moto ignores SourceVersion: the new version keeps only the given fields", sim: "t3.micro", moto: ""},
		}},
		{name: "ModifyLaunchTemplate default version", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateId: aws.String(e.ids["template"]), DefaultVersion: aws.String("2")})
			if err != nil {
				return nil, err
			}
			return obs{"default": aws.ToInt64(out.LaunchTemplate.DefaultVersionNumber), "latest": aws.ToInt64(out.LaunchTemplate.LatestVersionNumber)}, nil
		}},
		{name: "DescribeLaunchTemplateVersions $Default and 1", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
				LaunchTemplateId: aws.String(e.ids["template"]), Versions: []string{"$Default", "1"},
			})
			if err != nil {
				return nil, err
			}
			var vs []string
			for _, v := range out.LaunchTemplateVersions {
				vs = append(vs, fmt.Sprintf("v%d default=%t image=%s", aws.ToInt64(v.VersionNumber), aws.ToBool(v.DefaultVersion), aws.ToString(v.LaunchTemplateData.ImageId)))
			}
			slices.Sort(vs)
			return obs{"versions": vs}, nil
		}},
		{name: "DescribeLaunchTemplates by amirotate:track", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{
				Filters: []types.Filter{filter("tag:amirotate:track", e.ids["instance"])},
			})
			if err != nil {
				return nil, err
			}
			var lts []string
			for _, lt := range out.LaunchTemplates {
				lts = append(lts, fmt.Sprintf("%s default=%d latest=%d tags=%v", aws.ToString(lt.LaunchTemplateId),
					aws.ToInt64(lt.DefaultVersionNumber), aws.ToInt64(lt.LatestVersionNumber), tagsOf(lt.Tags)))
			}
			return obs{"templates": lts}, nil
		}},
		{name: "SSM PutParameter aws:ec2:image", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ssm(diffHome).PutParameter(ctx, &ssm.PutParameterInput{
				Name: aws.String(param), Value: aws.String(e.ids["image"]), Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image"),
			})
			if err != nil {
				return nil, err
			}
			return obs{"version": out.Version, "tier": string(out.Tier)}, nil
		}},
		{name: "SSM PutParameter without Overwrite", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ssm(diffHome).PutParameter(ctx, &ssm.PutParameterInput{
				Name: aws.String(param), Value: aws.String(e.ids["image"]), Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image"),
			})
			return obs{}, err
		}},
		{name: "SSM PutParameter with Overwrite", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ssm(diffHome).PutParameter(ctx, &ssm.PutParameterInput{
				Name: aws.String(param), Value: aws.String(e.ids["image"]), Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image"), Overwrite: aws.Bool(true),
			})
			if err != nil {
				return nil, err
			}
			return obs{"version": out.Version}, nil
		}},
		{name: "SSM GetParameter, GetParameters, GetParametersByPath", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ssm(diffHome)
			one, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
			if err != nil {
				return nil, err
			}
			many, err := c.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{param, "/" + run + "/none"}})
			if err != nil {
				return nil, err
			}
			byPath, err := c.GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String("/" + run)})
			if err != nil {
				return nil, err
			}
			p := one.Parameter
			var names []string
			for _, q := range byPath.Parameters {
				names = append(names, aws.ToString(q.Name))
			}
			return obs{"name": aws.ToString(p.Name), "value": aws.ToString(p.Value), "type": string(p.Type), "version": p.Version,
				"dataType": aws.ToString(p.DataType), "found": len(many.Parameters), "invalid": many.InvalidParameters, "byPath": names}, nil
		}},
		{name: "DescribeImageReferences", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).DescribeImageReferences(ctx, &ec2.DescribeImageReferencesInput{
				ImageIds: []string{e.ids["image"]}, IncludeAllResourceTypes: aws.Bool(true),
			})
			if err != nil {
				return nil, err
			}
			var refs []string
			for _, r := range out.ImageReferences {
				refs = append(refs, string(r.ResourceType)+" "+aws.ToString(r.Arn))
			}
			slices.Sort(refs)
			return obs{"references": refs}, nil
		}, deviations: map[string]deviation{
			"error": {why: "moto answers DescribeImageReferences with HTTP 500", sim: nil, moto: "HTTP 500"},
			"references": {why: "moto answers DescribeImageReferences with HTTP 500", moto: nil, sim: []string{
				"ec2:LaunchTemplate arn:aws:ec2:" + diffHome + ":123456789012:launch-template/<template>",
				"ssm:Parameter arn:aws:ssm:" + diffHome + ":123456789012:parameter" + param,
			}},
		}},
		{name: "EnableImageDeprecation", run: func(ctx context.Context, e *endpoint) (obs, error) {
			_, err := e.ec2(diffHome).EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{
				ImageId: aws.String(e.ids["image"]), DeprecateAt: aws.Time(time.Now().Add(30 * 24 * time.Hour).Truncate(time.Minute)),
			})
			return obs{"enabled": err == nil}, err
		}, deviations: map[string]deviation{
			"error":   {why: "moto answers EnableImageDeprecation with HTTP 500", sim: nil, moto: "HTTP 500"},
			"enabled": {why: "moto answers EnableImageDeprecation with HTTP 500", sim: true, moto: nil},
		}},
		{name: "SSM DeleteParameter, then GetParameter", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ssm(diffHome)
			if _, err := c.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(param)}); err != nil {
				return nil, err
			}
			_, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
			return obs{"stillThere": err == nil}, err
		}},
		{name: "StopInstances", run: func(ctx context.Context, e *endpoint) (obs, error) {
			out, err := e.ec2(diffHome).StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{e.ids["instance"]}})
			if err != nil || len(out.StoppingInstances) != 1 {
				return obs{"instances": len(out.StoppingInstances)}, err
			}
			s := out.StoppingInstances[0]
			return obs{"id": aws.ToString(s.InstanceId), "previous": string(s.PreviousState.Name), "current": string(s.CurrentState.Name)}, nil
		}},
		{name: "DeregisterImage, then DescribeImages by id", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			if _, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(e.ids["image"])}); err != nil {
				return nil, err
			}
			out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{filter("name", golden)}})
			if err != nil {
				return nil, err
			}
			return obs{"byName": imageIDs(out.Images)}, nil
		}},
		{name: "DeleteSnapshot after deregistering, twice", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			o := obs{}
			for _, try := range []string{"first", "second"} {
				_, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(e.ids["snapshot"])})
				o[try] = "deleted"
				if err != nil {
					o[try] = errCode(err)
				}
			}
			return o, nil
		}},
		{name: "DeleteLaunchTemplate, TerminateInstances", run: func(ctx context.Context, e *endpoint) (obs, error) {
			c := e.ec2(diffHome)
			if _, err := c.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(e.ids["template"])}); err != nil {
				return nil, err
			}
			out, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{e.ids["instance"]}})
			if err != nil || len(out.TerminatingInstances) != 1 {
				return obs{"instances": len(out.TerminatingInstances)}, err
			}
			return obs{"current": string(out.TerminatingInstances[0].CurrentState.Name)}, nil
		}},
	}
}
