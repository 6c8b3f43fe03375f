package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// awsCLI is one installed AWS CLI.
type awsCLI struct {
	path    string
	version string // "aws-cli/1.45.11 Python/3.11.7 ..."
	major   int
	// errExit is the exit status of a call that AWS answered with an error:
	// v1 exits 255, v2 254 (its 255 means a failure of its own).
	errExit int
}

const (
	installV1 = "AWS CLI v1 not found (`aws` on PATH, or the pyenv shim): it ships with the machine's Python; elsewhere `pip install awscli` from PyPI"
	installV2 = "AWS CLI v2 not found at /usr/bin/aws: install it with `apt-get update && apt-get install -y awscli` (.ci/run does)"
)

var (
	clisOnce sync.Once
	clis     map[int]*awsCLI // by major version
	clisErr  error
	cliCalls atomic.Int64
)

// requireCLI returns the AWS CLI of the given major version or fails the
// test with the step that installs it: in CI a missing CLI must never
// turn into a quietly shorter test run.
func requireCLI(t *testing.T, major int) *awsCLI {
	t.Helper()
	clisOnce.Do(func() { clis, clisErr = findCLIs() })
	if clisErr != nil {
		t.Fatalf("looking for the AWS CLIs: %v", clisErr)
	}
	c := clis[major]
	if c == nil {
		msg := map[int]string{1: installV1, 2: installV2}[major]
		if inCI() {
			msg += " (CI=true: the conformance tests must run)"
		}
		t.Fatal(msg)
	}
	t.Logf("using %s (%s)", c.path, c.version)
	return c
}

// findCLIs classifies the `aws` on PATH and Debian's /usr/bin/aws by the
// version they print.
func findCLIs() (map[int]*awsCLI, error) {
	var candidates []string
	if p, err := exec.LookPath("aws"); err == nil {
		candidates = append(candidates, p)
	}
	// CLI v1 lives in the pyenv Python, which a bare PATH may not reach.
	candidates = append(candidates, "/usr/bin/aws", filepath.Join(pyenvRoot(), "shims", "aws"))
	found := map[int]*awsCLI{}
	for i, p := range candidates {
		if _, err := os.Stat(p); err != nil || slices.Contains(candidates[:i], p) {
			continue
		}
		out, err := exec.Command(p, "--version").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s --version: %v: %s", p, err, out)
		}
		v := strings.TrimSpace(string(out))
		c := &awsCLI{path: p, version: v}
		switch {
		case strings.HasPrefix(v, "aws-cli/1."):
			c.major, c.errExit = 1, 255
		case strings.HasPrefix(v, "aws-cli/2."):
			c.major, c.errExit = 2, 254
		default:
			return nil, fmt.Errorf("%s: unrecognised version %q", p, v)
		}
		if found[c.major] == nil {
			found[c.major] = c
		}
	}
	return found, nil
}

type cliResult struct {
	args   []string
	stdout string
	stderr string
	code   int
	took   time.Duration
}

func (r cliResult) String() string {
	return fmt.Sprintf("aws %s\n  exit %d after %s\n  stdout: %s\n  stderr: %s",
		strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
}

// run calls the CLI against the shared simulator in region. The
// environment is isolated from any real AWS configuration: test
// credentials, no config files, no pager, no instance metadata.
func (c *awsCLI) run(t *testing.T, region string, args ...string) cliResult {
	t.Helper()
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	none := os.DevNull
	env = append(env,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_REGION="+region, "AWS_DEFAULT_REGION="+region, // v1 reads only the latter
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS=2",
	)
	argv := args
	if c.major == 1 {
		// CLI v1 (botocore ≥ 1.31) honours the service-specific endpoint
		// variables, as the SDKs do: this is how the README points it here.
		env = append(env, "AWS_ENDPOINT_URL_EC2="+shared.url, "AWS_ENDPOINT_URL_SSM="+shared.url)
	} else {
		// Debian's CLI v2 (2.9) predates AWS_ENDPOINT_URL_*.
		argv = append([]string{"--endpoint-url", shared.url}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.path, argv...)
	cmd.Env = env
	cmd.Stdin = nil
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	cliCalls.Add(1)
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		r.code = -1
		r.stderr += "\n" + err.Error()
	}
	return r
}

// ok runs a call that must succeed and decodes its JSON output into v
// (v nil: output ignored). It reports through t.Errorf, so it may run in
// a goroutine of parallel.
func (c *awsCLI) ok(t *testing.T, region string, v any, args ...string) bool {
	t.Helper()
	if v != nil {
		args = append(args, "--output", "json")
	}
	r := c.run(t, region, args...)
	if r.code != 0 {
		t.Errorf("want success:\n%s", r)
		return false
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Errorf("decoding the output: %v\n%s", err, r)
			return false
		}
	}
	return true
}

// fails runs a call that EC2 (or SSM) must refuse with code.
func (c *awsCLI) fails(t *testing.T, region, code string, args ...string) {
	t.Helper()
	r := c.run(t, region, args...)
	if r.code != c.errExit || !strings.Contains(r.stderr, "("+code+")") {
		t.Errorf("want exit %d with error code %s:\n%s", c.errExit, code, r)
	}
}

// Just the fields the tests read from the CLI's JSON output.
type (
	cliTag   struct{ Key, Value string }
	cliImage struct {
		ImageId, Name, Description, State, CreationDate, OwnerId, ImageOwnerAlias string
		RootDeviceName, RootDeviceType, SourceImageId, SourceImageRegion          string
		Public                                                                    bool
		Tags                                                                      []cliTag
		BlockDeviceMappings                                                       []struct {
			DeviceName string
			Ebs        *struct {
				SnapshotId string
				VolumeSize int
			}
		}
	}
	cliInstance struct {
		InstanceId, ImageId, InstanceType, KeyName string
		State                                      struct{ Name string }
		Tags                                       []cliTag
		BlockDeviceMappings                        []struct {
			DeviceName string
			Ebs        struct{ VolumeId string }
		}
	}
	cliSnapshot struct {
		SnapshotId, State, OwnerId string
		VolumeSize                 int
		Tags                       []cliTag
	}
	cliLaunchTemplate struct {
		LaunchTemplateId, LaunchTemplateName      string
		DefaultVersionNumber, LatestVersionNumber int
		Tags                                      []cliTag
	}
	cliLaunchTemplateVersion struct {
		LaunchTemplateId   string
		VersionNumber      int
		DefaultVersion     bool
		VersionDescription string
		LaunchTemplateData struct{ ImageId, InstanceType string }
	}
	cliParameter struct {
		Name, Type, Value, DataType string
		Version                     int
	}
)

func tagMap(tags []cliTag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

var (
	amiID        = regexp.MustCompile(`^ami-[0-9a-f]{17}$`)
	snapID       = regexp.MustCompile(`^snap-[0-9a-f]{17}$`)
	instanceID   = regexp.MustCompile(`^i-[0-9a-f]{17}$`)
	ltID         = regexp.MustCompile(`^lt-[0-9a-f]{17}$`)
	creationDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

func TestCLIV1_SeedGuideWalkthrough(t *testing.T) {
	t.Parallel()
	walkthrough(t, requireCLI(t, 1), "us-east-1", "eu-west-1")
}

func TestCLIV2_SeedGuideWalkthrough(t *testing.T) {
	t.Parallel()
	walkthrough(t, requireCLI(t, 2), "us-west-2", "eu-central-1")
}

// walkthrough follows the AMI guide's CLI steps (create an image from a
// configured instance with --no-reboot and image + snapshot tags, wait,
// verify with a filtered table, copy to another region, launch from it,
// deregister, delete the snapshots), plus what amirotate itself relies on:
// tags, snapshots by tag, image references, launch template versions, SSM
// parameters of type aws:ec2:image, and EC2's error codes for bad calls.
// Calls that do not depend on each other run in parallel; CLI v2 (Debian's
// 2.9, older models) runs the guide and a subset of the rest.
func walkthrough(t *testing.T, c *awsCLI, home, dest string) {
	full := c.major == 1
	start := time.Now()
	defer func() {
		t.Logf("CLI v%d: walkthrough took %s", c.major, time.Since(start).Round(time.Millisecond))
	}()

	// 1. What there is to launch from; calls that need no fixture.
	var amazon struct{ Images []cliImage }
	var regions []string
	parallel(t,
		func() {
			// --page-size 1: the CLI follows NextToken through every page.
			c.ok(t, home, &amazon, "ec2", "describe-images", "--owners", "amazon", "--filters", "Name=state,Values=available", "--page-size", "1")
		},
		func() {
			c.fails(t, home, "InvalidAMIID.NotFound", "ec2", "describe-images", "--image-ids", "ami-0000000000000000f")
		},
		func() {
			if full {
				c.fails(t, home, "InvalidAMIID.Malformed", "ec2", "describe-images", "--image-ids", "ami-xyz")
			}
		},
		func() {
			if full {
				c.ok(t, home, &regions, "ec2", "describe-regions", "--query", "Regions[].RegionName")
			}
		},
	)
	if len(amazon.Images) == 0 {
		t.Fatal("describe-images --owners amazon: no image to launch from")
	}
	base := amazon.Images[0]
	seen := map[string]bool{}
	for _, img := range amazon.Images {
		if seen[img.ImageId] {
			t.Errorf("describe-images --page-size 1: %s on two pages", img.ImageId)
		}
		seen[img.ImageId] = true
		if img.ImageOwnerAlias != "amazon" || !img.Public || !amiID.MatchString(img.ImageId) || img.State != "available" {
			t.Errorf("describe-images --owners amazon: want public available ami-<17 hex> images owned by alias amazon, got %+v", img)
		}
		if img.CreationDate > base.CreationDate {
			base = img
		}
	}
	if full {
		slices.Sort(regions)
		want := slices.Clone(simRegions)
		slices.Sort(want)
		if !slices.Equal(regions, want) {
			t.Errorf("describe-regions: got %v, want the served regions %v", regions, want)
		}
	}

	// 2. The "configured instance": tagged, with a data volume, launched
	// with the guide's key, security group, subnet and profile parameters.
	var run struct{ Instances []cliInstance }
	if !c.ok(t, home, &run, "ec2", "run-instances",
		"--image-id", base.ImageId, "--instance-type", "t3.medium", "--key-name", "my-key-pair",
		"--security-group-ids", "sg-0abc1234def567890", "--subnet-id", "subnet-0abc1234def567890",
		"--iam-instance-profile", "Name=my-instance-profile", "--count", "1",
		"--block-device-mappings", "DeviceName=/dev/sdf,Ebs={VolumeSize=20,VolumeType=gp3,DeleteOnTermination=true}",
		"--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=golden},{Key=amirotate:policy,Value=cli}]") {
		t.FailNow()
	}
	if len(run.Instances) != 1 {
		t.Fatalf("run-instances --count 1: got %d instances", len(run.Instances))
	}
	inst := run.Instances[0]
	if !instanceID.MatchString(inst.InstanceId) || inst.ImageId != base.ImageId || inst.KeyName != "my-key-pair" ||
		tagMap(inst.Tags)["amirotate:policy"] != "cli" || tagMap(inst.Tags)["Name"] != "golden" {
		t.Errorf("run-instances: got %+v", inst)
	}

	// 3. The guide's create-image, verbatim but for the instance id.
	var created struct{ ImageId string }
	var described struct {
		Reservations []struct{ Instances []cliInstance }
	}
	var lt struct{ LaunchTemplate cliLaunchTemplate }
	parallel(t,
		func() {
			began := time.Now()
			if !c.ok(t, home, &created, "ec2", "create-image",
				"--instance-id", inst.InstanceId,
				"--name", "my-app-golden-v1",
				"--description", "Golden AMI for my-app, configured 2025-07",
				"--no-reboot",
				"--tag-specifications",
				"ResourceType=image,Tags=[{Key=Name,Value=my-app-golden-v1},{Key=Environment,Value=production}]",
				"ResourceType=snapshot,Tags=[{Key=Name,Value=my-app-golden-v1-snapshot}]") {
				return
			}
			// A CLI call takes too long to start to see the pending state
			// reliably on a loaded machine; the SDK looks at once, and a
			// look within the image delay must find the image pending.
			state := simImageState(t, home, created.ImageId)
			if took := time.Since(began); state != "pending" && took < simImageDelay {
				t.Errorf("%s after create-image the image should still be pending (image delay %s), got %q", took.Round(time.Millisecond), simImageDelay, state)
			}
		},
		func() {
			if full {
				c.ok(t, home, &described, "ec2", "describe-instances", "--instance-ids", inst.InstanceId)
			}
		},
		func() {
			if full {
				c.ok(t, home, &lt, "ec2", "create-launch-template",
					"--launch-template-name", "golden-cli-v"+fmt.Sprint(c.major),
					"--launch-template-data", `{"ImageId":"`+base.ImageId+`","InstanceType":"t3.micro"}`,
					"--tag-specifications", "ResourceType=launch-template,Tags=[{Key=amirotate:track,Value="+inst.InstanceId+"}]")
			}
		},
	)
	ami := created.ImageId
	if !amiID.MatchString(ami) {
		t.Fatalf("create-image: image id %q is not ami-<17 hex>", ami)
	}
	if full {
		if len(described.Reservations) != 1 || len(described.Reservations[0].Instances) != 1 {
			t.Fatalf("describe-instances --instance-ids %s: got %+v", inst.InstanceId, described)
		}
		if got := described.Reservations[0].Instances[0]; got.State.Name != "running" || len(got.BlockDeviceMappings) != 2 {
			t.Errorf("describe-instances: want running with a root and a data volume, got %+v", got)
		}
		if !ltID.MatchString(lt.LaunchTemplate.LaunchTemplateId) || lt.LaunchTemplate.DefaultVersionNumber != 1 || lt.LaunchTemplate.LatestVersionNumber != 1 {
			t.Errorf("create-launch-template: got %+v", lt.LaunchTemplate)
		}
	}

	// 4. While the guide's waiter runs: everything that needs no available
	// image, in independent chains.
	var img cliImage
	var snaps []string
	var bySnapTag struct{ Snapshots []cliSnapshot }
	var byKeep struct{ Images []cliImage }
	var put cliParameter
	var got struct{ Parameter cliParameter }
	var ltv struct{ LaunchTemplateVersion cliLaunchTemplateVersion }
	var modified struct{ LaunchTemplate cliLaunchTemplate }
	var versions struct{ LaunchTemplateVersions []cliLaunchTemplateVersion }
	var tracked struct{ LaunchTemplates []cliLaunchTemplate }
	param := fmt.Sprintf("/golden/cli-v%d/latest", c.major)
	parallel(t,
		func() {
			waitStart := time.Now()
			c.ok(t, home, nil, "ec2", "wait", "image-available", "--image-ids", ami)
			t.Logf("CLI v%d: aws ec2 wait image-available returned after %s", c.major, time.Since(waitStart).Round(time.Millisecond))
		},
		func() {
			var out struct{ Images []cliImage }
			if !c.ok(t, home, &out, "ec2", "describe-images", "--image-ids", ami) {
				return
			}
			if len(out.Images) != 1 {
				t.Errorf("describe-images --image-ids %s: got %d images", ami, len(out.Images))
				return
			}
			img = out.Images[0]
			for _, m := range img.BlockDeviceMappings {
				if m.Ebs != nil && snapID.MatchString(m.Ebs.SnapshotId) {
					snaps = append(snaps, m.Ebs.SnapshotId)
				}
			}
			if len(snaps) != 2 {
				t.Errorf("image of an instance with a root and a data volume: want 2 EBS snapshots, got %+v", img.BlockDeviceMappings)
				return
			}
			if full {
				c.fails(t, home, "InvalidSnapshot.InUse", "ec2", "delete-snapshot", "--snapshot-id", snaps[0])
			}
		},
		func() {
			c.ok(t, home, &bySnapTag, "ec2", "describe-snapshots", "--owner-ids", "self", "--filters", "Name=tag:Name,Values=my-app-golden-v1-snapshot")
		},
		func() {
			c.fails(t, home, "InvalidAMIName.Duplicate", "ec2", "create-image", "--instance-id", inst.InstanceId, "--name", "my-app-golden-v1", "--no-reboot")
		},
		func() {
			if full {
				c.fails(t, home, "InvalidParameterValue", "ec2", "create-image", "--instance-id", inst.InstanceId, "--name", "bad-tag-target",
					"--tag-specifications", "ResourceType=volume,Tags=[{Key=a,Value=b}]")
			}
		},
		func() {
			if full && c.ok(t, home, nil, "ec2", "create-tags", "--resources", ami, "--tags", "Key=Team,Value=platform", "Key=amirotate:keep,Value=true") {
				c.ok(t, home, &byKeep, "ec2", "describe-images", "--owners", "self", "--filters", "Name=tag:amirotate:keep,Values=true", "Name=tag:Team,Values=platform")
			}
		},
		func() {
			if !c.ok(t, home, &put, "ssm", "put-parameter", "--name", param, "--value", ami, "--type", "String", "--data-type", "aws:ec2:image") ||
				!c.ok(t, home, &got, "ssm", "get-parameter", "--name", param) {
				return
			}
			if full {
				c.fails(t, home, "ParameterAlreadyExists", "ssm", "put-parameter", "--name", param, "--value", ami, "--type", "String", "--data-type", "aws:ec2:image")
			}
		},
		func() {
			if full {
				c.fails(t, home, "ParameterNotFound", "ssm", "get-parameter", "--name", "/golden/none")
			}
		},
		func() {
			if !full {
				return
			}
			id := lt.LaunchTemplate.LaunchTemplateId
			_ = c.ok(t, home, &ltv, "ec2", "create-launch-template-version", "--launch-template-id", id,
				"--source-version", "1", "--version-description", "golden", "--launch-template-data", `{"ImageId":"`+ami+`"}`) &&
				c.ok(t, home, &modified, "ec2", "modify-launch-template", "--launch-template-id", id, "--default-version", "2") &&
				c.ok(t, home, &versions, "ec2", "describe-launch-template-versions", "--launch-template-id", id, "--versions", "$Default", "1") &&
				c.ok(t, home, &tracked, "ec2", "describe-launch-templates", "--filters", "Name=tag:amirotate:track,Values="+inst.InstanceId)
		},
	)
	if img.Name != "my-app-golden-v1" || img.Description != "Golden AMI for my-app, configured 2025-07" ||
		!creationDate.MatchString(img.CreationDate) || img.RootDeviceType != "ebs" || img.Public ||
		(img.State != "pending" && img.State != "available") {
		t.Errorf("describe-images: got %+v", img)
	}
	if tags := tagMap(img.Tags); tags["Name"] != "my-app-golden-v1" || tags["Environment"] != "production" {
		t.Errorf("image tags from --tag-specifications: got %v", tags)
	}
	var gotSnaps []string
	for _, s := range bySnapTag.Snapshots {
		gotSnaps = append(gotSnaps, s.SnapshotId)
		if s.State != "pending" && s.State != "completed" {
			t.Errorf("snapshot %s: state %q", s.SnapshotId, s.State)
		}
		if tagMap(s.Tags)["Name"] != "my-app-golden-v1-snapshot" {
			t.Errorf("snapshot %s: tags %v", s.SnapshotId, s.Tags)
		}
	}
	slices.Sort(gotSnaps)
	slices.Sort(snaps)
	if !slices.Equal(gotSnaps, snaps) {
		t.Errorf("describe-snapshots by the snapshot tag: got %v, want the image's snapshots %v", gotSnaps, snaps)
	}
	if put.Version != 1 {
		t.Errorf("ssm put-parameter: want version 1, got %+v", put)
	}
	if p := got.Parameter; p.Value != ami || p.DataType != "aws:ec2:image" || p.Version != 1 || p.Type != "String" {
		t.Errorf("ssm get-parameter: got %+v", p)
	}
	if full {
		if len(byKeep.Images) != 1 || byKeep.Images[0].ImageId != ami {
			t.Errorf("describe-images by the tags create-tags added: got %+v, want %s", byKeep.Images, ami)
		}
		if v := ltv.LaunchTemplateVersion; v.VersionNumber != 2 || v.LaunchTemplateData.ImageId != ami || v.LaunchTemplateData.InstanceType != "t3.micro" || v.DefaultVersion {
			t.Errorf("create-launch-template-version --source-version 1: want version 2 with the new image and the source's instance type, not default; got %+v", v)
		}
		if modified.LaunchTemplate.DefaultVersionNumber != 2 {
			t.Errorf("modify-launch-template --default-version 2: got %+v", modified.LaunchTemplate)
		}
		byNumber := map[int]cliLaunchTemplateVersion{}
		for _, v := range versions.LaunchTemplateVersions {
			byNumber[v.VersionNumber] = v
		}
		if v2, v1 := byNumber[2], byNumber[1]; len(byNumber) != 2 || !v2.DefaultVersion || v2.LaunchTemplateData.ImageId != ami || v1.DefaultVersion || v1.LaunchTemplateData.ImageId != base.ImageId {
			t.Errorf("describe-launch-template-versions $Default 1: got %+v", versions.LaunchTemplateVersions)
		}
		if len(tracked.LaunchTemplates) != 1 || tracked.LaunchTemplates[0].LaunchTemplateId != lt.LaunchTemplate.LaunchTemplateId ||
			tracked.LaunchTemplates[0].DefaultVersionNumber != 2 || tracked.LaunchTemplates[0].LatestVersionNumber != 2 {
			t.Errorf("describe-launch-templates by amirotate:track: got %+v", tracked.LaunchTemplates)
		}
	}

	// 5. Available: the guide's verification table, its copy to another
	// region and its launch from the new image.
	var table string
	var copied struct{ ImageId string }
	var launched struct{ Instances []cliInstance }
	parallel(t,
		func() {
			r := c.run(t, home, "ec2", "describe-images", "--owners", "self",
				"--filters", "Name=name,Values=my-app-golden-v1",
				"--query", "Images[*].{ID:ImageId,State:State,Created:CreationDate}",
				"--output", "table")
			if r.code != 0 {
				t.Errorf("want success:\n%s", r)
			}
			table = r.stdout
		},
		func() {
			c.ok(t, home, &copied, "ec2", "copy-image",
				"--source-region", home,
				"--source-image-id", ami,
				"--region", dest,
				"--name", "my-app-golden-v1-eu",
				"--description", "Cross-region copy for EU deployment")
		},
		func() {
			c.ok(t, home, &launched, "ec2", "run-instances",
				"--image-id", ami, "--instance-type", "t3.medium", "--key-name", "my-key-pair",
				"--security-group-ids", "sg-0abc1234def567890", "--subnet-id", "subnet-0abc1234def567890",
				"--iam-instance-profile", "Name=my-instance-profile", "--count", "1",
				"--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=my-app-from-ami}]")
		},
	)
	for _, want := range []string{"DescribeImages", ami, "available", "Created", "ID", "State"} {
		if !strings.Contains(table, want) {
			t.Errorf("describe-images --output table: missing %q in\n%s", want, table)
		}
	}
	if !amiID.MatchString(copied.ImageId) || copied.ImageId == ami {
		t.Fatalf("copy-image: got image id %q", copied.ImageId)
	}
	if len(launched.Instances) != 1 || launched.Instances[0].ImageId != ami {
		t.Fatalf("run-instances from the new image: got %+v", launched.Instances)
	}

	// 6. The copy as its region shows it, and what uses the image now: an
	// instance, the launch template's default version, the parameter.
	var copyDesc struct{ Images []cliImage }
	var refs struct {
		ImageReferences []struct{ ImageId, ResourceType, Arn string }
	}
	parallel(t,
		func() { c.ok(t, dest, &copyDesc, "ec2", "describe-images", "--image-ids", copied.ImageId) },
		func() {
			if full {
				c.ok(t, home, &refs, "ec2", "describe-image-references", "--image-ids", ami, "--include-all-resource-types")
			}
		},
	)
	if len(copyDesc.Images) != 1 {
		t.Fatalf("describe-images in %s of the copy: got %+v", dest, copyDesc.Images)
	}
	if cp := copyDesc.Images[0]; cp.Name != "my-app-golden-v1-eu" || cp.Description != "Cross-region copy for EU deployment" ||
		(cp.State != "pending" && cp.State != "available") || (full && (cp.SourceImageId != ami || cp.SourceImageRegion != home)) {
		t.Errorf("the copy in %s: got %+v", dest, cp)
	}
	if full {
		kinds := map[string]string{}
		for _, r := range refs.ImageReferences {
			if r.ImageId != ami {
				t.Errorf("describe-image-references: reference to %s, asked for %s", r.ImageId, ami)
			}
			kinds[r.ResourceType] = r.Arn
		}
		for kind, part := range map[string]string{
			"ec2:Instance":       launched.Instances[0].InstanceId,
			"ec2:LaunchTemplate": lt.LaunchTemplate.LaunchTemplateId,
			"ssm:Parameter":      param,
		} {
			if !strings.Contains(kinds[kind], part) {
				t.Errorf("describe-image-references: want a %s reference naming %s, got %+v", kind, part, refs.ImageReferences)
			}
		}
	}

	// 7. The guide's cleanup: deregister, then delete the snapshots noted
	// before. The copy goes with its snapshots in one call where the CLI
	// knows --delete-associated-snapshots (v1).
	waitAvailable(t, dest, copied.ImageId)
	var dereg struct {
		DeleteSnapshotResults []struct{ SnapshotId, ReturnCode string }
	}
	parallel(t,
		func() { c.ok(t, home, nil, "ec2", "deregister-image", "--image-id", ami) },
		func() {
			if full {
				c.ok(t, dest, &dereg, "ec2", "deregister-image", "--image-id", copied.ImageId, "--delete-associated-snapshots")
			} else {
				c.ok(t, dest, nil, "ec2", "deregister-image", "--image-id", copied.ImageId)
			}
		},
	)
	if full {
		if len(dereg.DeleteSnapshotResults) != 2 {
			t.Errorf("deregister-image --delete-associated-snapshots: want 2 snapshot results, got %+v", dereg.DeleteSnapshotResults)
		}
		for _, r := range dereg.DeleteSnapshotResults {
			if r.ReturnCode != "success" || !snapID.MatchString(r.SnapshotId) {
				t.Errorf("deregister-image --delete-associated-snapshots: got %+v", r)
			}
		}
	}
	parallel(t,
		func() { c.ok(t, home, nil, "ec2", "delete-snapshot", "--snapshot-id", snaps[0]) },
		func() { c.ok(t, home, nil, "ec2", "delete-snapshot", "--snapshot-id", snaps[1]) },
	)
	if full {
		c.fails(t, home, "InvalidSnapshot.NotFound", "ec2", "delete-snapshot", "--snapshot-id", snaps[0])
	}
	t.Logf("CLI v%d: %d CLI calls so far in this package", c.major, cliCalls.Load())
}

// simImageState asks the shared simulator for an image's state through
// the SDK.
func simImageState(t *testing.T, region, image string) string {
	e := &endpoint{url: shared.url}
	out, err := e.ec2(region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{image}})
	if err != nil {
		t.Errorf("DescribeImages %s: %v", image, err)
		return ""
	}
	if len(out.Images) != 1 {
		t.Errorf("DescribeImages %s: %d images", image, len(out.Images))
		return ""
	}
	return string(out.Images[0].State)
}

// TestCLIV1_SeededDemoFleet checks what `amirotate sim --seed-demo` made:
// five running instances in policies web and db, and a launch template
// tracking one of them.
func TestCLIV1_SeededDemoFleet(t *testing.T) {
	t.Parallel()
	c := requireCLI(t, 1)
	var ids map[string][]string
	var tracked []string
	parallel(t,
		func() {
			c.ok(t, "us-east-1", &ids, "ec2", "describe-instances",
				"--filters", "Name=tag-key,Values=amirotate:policy", "Name=instance-state-name,Values=running",
				"--query", `Reservations[].Instances[].{p: Tags[?Key=='amirotate:policy'] | [0].Value, id: InstanceId} | {web: [?p=='web'].id, db: [?p=='db'].id}`)
		},
		func() {
			c.ok(t, "us-east-1", &tracked, "ec2", "describe-launch-templates",
				"--filters", "Name=tag-key,Values=amirotate:track", "Name=launch-template-name,Values=demo-*", "--query", "LaunchTemplates[].Tags[?Key=='amirotate:track'].Value | []")
		},
	)
	if len(ids["web"]) != 3 || len(ids["db"]) != 2 {
		t.Errorf("seeded fleet: want 3 web and 2 db instances running, got %v", ids)
	}
	if len(tracked) != 1 || !slices.Contains(ids["web"], tracked[0]) {
		t.Errorf("seeded launch template: want one tracking a web instance, got %v (web %v)", tracked, ids["web"])
	}
}
