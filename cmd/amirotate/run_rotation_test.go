package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/demofleet"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/rotation"
)

// These tests drive `amirotate run` (runRotation, the command's entry point)
// end to end: the flags, the standard AWS configuration pointed at the
// simulator through AWS_ENDPOINT_URL_*, the real state machine in the node
// runner, lambdahost and the real handlers. They check what the command
// promises: live progress, the summary table, --json, --dry-run, --instance,
// a rerun of the same --rotation-time making nothing twice, and an error
// (exit status 1) exactly when the execution did not succeed.

const auditPolicy = `{
  "name": "web",
  "selector": {"tags": {"amirotate:policy": "web"}},
  "copyTo": [{"region": "eu-west-1"}],
  "retention": {"keep": 1},
  "publish": {"ssmParameter": "/amirotate/{policy}/{instanceId}/latest", "launchTemplates": true},
  "pollIntervalSeconds": 1,
  "timeoutMinutes": 30
}`

type runWorld struct {
	t      *testing.T
	ctx    context.Context
	sim    *ec2sim.Sim
	ec2    map[string]*ec2.Client
	fleet  demofleet.Fleet
	policy string
	dir    string
}

func newRunWorld(t *testing.T) *runWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	sim, url, err := startSim(ctx, ec2sim.Options{Regions: demoRegions, ImageDelay: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint is local, so the command's steps sign as their roles,
	// which the simulator enforces: any denial fails the test.
	iam, err := iamsim.Enforce(sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := iam.DenialsError(); err != nil {
			t.Error(err)
		}
	})
	home := demoRegions[0]
	// The command reads the standard configuration, as against a real account.
	t.Setenv("AWS_ENDPOINT_URL_EC2", url)
	t.Setenv("AWS_ENDPOINT_URL_SSM", url)
	t.Setenv("AWS_ENDPOINT_URL_AUTO_SCALING", url)
	t.Setenv("AWS_REGION", home)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDAUDIT")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "audit-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	cfg := ec2sim.AWSConfig(url, home)
	fleet, err := demofleet.Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "web.json")
	// The seeded template launches the base image: the policy adopts it.
	adopting := strings.Replace(auditPolicy, `"launchTemplates": true}`,
		`"launchTemplates": true, "adoptLaunchTemplates": ["`+fleet.LaunchTemplateID+`"]}`, 1)
	if err := os.WriteFile(policy, []byte(adopting), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &runWorld{t: t, ctx: ctx, sim: sim, fleet: fleet, policy: policy, dir: dir, ec2: map[string]*ec2.Client{}}
	for _, r := range demoRegions {
		c := cfg.Copy()
		c.Region = r
		w.ec2[r] = ec2.NewFromConfig(c)
	}
	return w
}

// run executes `amirotate run` with args and returns stdout and the error
// main would turn into exit status 1.
func (w *runWorld) run(args ...string) (string, error) {
	w.t.Helper()
	var stdout, stderr bytes.Buffer
	err := runRotation(w.ctx, append([]string{"--policy", w.policy}, args...), &stdout, &stderr)
	if stderr.Len() > 0 {
		w.t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

// ownImages lists the amirotate images of policy web in region, by instance.
func (w *runWorld) ownImages(region string) map[string][]types.Image {
	w.t.Helper()
	out, err := w.ec2[region].DescribeImages(w.ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []types.Filter{{Name: aws.String("tag:amirotate:policy"), Values: []string{"web"}}},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	m := map[string][]types.Image{}
	for _, img := range out.Images {
		for _, tg := range img.Tags {
			if aws.ToString(tg.Key) == "amirotate:instance-id" {
				m[aws.ToString(tg.Value)] = append(m[aws.ToString(tg.Value)], img)
			}
		}
	}
	return m
}

type auditReport struct {
	Summary struct {
		Policy        string                `json:"policy"`
		Rotation      string                `json:"rotation"`
		DryRun        bool                  `json:"dryRun"`
		Instances     int                   `json:"instances"`
		Outcomes      map[string]int        `json:"outcomes"`
		ImagesCreated int                   `json:"imagesCreated"`
		CopiesCreated int                   `json:"copiesCreated"`
		ImagesDeleted int                   `json:"imagesDeleted"`
		Failed        bool                  `json:"failed"`
		Cost          rotation.CostEstimate `json:"cost"`
	} `json:"summary"`
	Rows []struct {
		InstanceID string            `json:"instanceId"`
		Region     string            `json:"region"`
		ImageID    string            `json:"imageId"`
		State      string            `json:"state"`
		SourceID   string            `json:"sourceImageId"`
		Published  []string          `json:"published"`
		Deleted    []string          `json:"deleted"`
		Kept       map[string]string `json:"kept"`
		Error      string            `json:"error"`
	} `json:"instances"`
	Execution struct {
		Status string `json:"status"`
		Events []struct {
			DetailType string          `json:"DetailType"`
			Detail     json.RawMessage `json:"Detail"`
		} `json:"events"`
	} `json:"execution"`
}

func (w *runWorld) readJSON(path string) auditReport {
	w.t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		w.t.Fatalf("--json file: %v", err)
	}
	var r auditReport
	if err := json.Unmarshal(raw, &r); err != nil {
		w.t.Fatalf("--json file is not the summary: %v\n%s", err, raw)
	}
	return r
}

func TestRunCommand_AgainstTheSimulatorThroughTheStandardConfig(t *testing.T) {
	w := newRunWorld(t)
	web := w.fleet.InstanceIDs("web")
	if len(web) < 2 {
		t.Fatalf("demo fleet has %d web instances", len(web))
	}
	day1 := time.Now().UTC().Truncate(24 * time.Hour).Add(-48*time.Hour + 3*time.Hour)
	day2 := day1.Add(24 * time.Hour)

	// 1. A dry run changes nothing and says so.
	dryJSON := filepath.Join(w.dir, "dry.json")
	out, err := w.run("--rotation-time", day1.Format(time.RFC3339), "--dry-run", "--json", dryJSON)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if n := len(w.ownImages("us-east-1")) + len(w.ownImages("eu-west-1")); n != 0 {
		t.Fatalf("dry run created images for %d instances", n)
	}
	if !strings.Contains(out, "dry run: nothing was changed") {
		t.Errorf("dry run summary does not say it changed nothing:\n%s", out)
	}
	if r := w.readJSON(dryJSON); !r.Summary.DryRun || r.Summary.ImagesCreated != 0 {
		t.Errorf("dry run JSON summary %+v", r.Summary)
	}

	// 2. The real rotation: live progress, the table, --json, exit 0.
	j1 := filepath.Join(w.dir, "day1.json")
	out, err = w.run("--rotation-time", day1.Format(time.RFC3339), "--json", j1)
	if err != nil {
		t.Fatalf("rotation: %v\n%s", err, out)
	}
	for _, want := range []string{"→ Discover", "← batch 1 Poll", "INSTANCE", "NEW IMAGE", "PUBLISHED", "RETENTION", "execution SUCCEEDED"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	r1 := w.readJSON(j1)
	if r1.Execution.Status != "SUCCEEDED" || r1.Summary.Failed || r1.Summary.ImagesCreated != len(web) || r1.Summary.CopiesCreated != len(web) {
		t.Fatalf("day 1 summary %+v, execution %s; want %d images and %d copies", r1.Summary, r1.Execution.Status, len(web), len(web))
	}
	rows := map[[2]string]int{}
	for _, row := range r1.Rows {
		rows[[2]string{row.InstanceID, row.Region}]++
		if row.State != "available" || !strings.HasPrefix(row.ImageID, "ami-") {
			t.Errorf("row %+v: want an available new image", row)
		}
		if row.Region == "eu-west-1" && row.SourceID == "" {
			t.Errorf("copy row %+v has no source image", row)
		}
		if len(row.Published) == 0 {
			t.Errorf("row %+v: nothing published (policy publishes to SSM)", row)
		}
		if row.InstanceID == w.fleet.TrackedInstance && row.Region == "us-east-1" &&
			!strings.Contains(strings.Join(row.Published, " "), w.fleet.LaunchTemplateID) {
			t.Errorf("tracked instance's row %+v does not list launch template %s", row, w.fleet.LaunchTemplateID)
		}
	}
	for _, id := range web {
		for _, region := range []string{"us-east-1", "eu-west-1"} {
			if rows[[2]string{id, region}] != 1 {
				t.Errorf("JSON has %d rows for %s in %s, want 1", rows[[2]string{id, region}], id, region)
			}
		}
	}

	// 3. The same --rotation-time again: found, nothing created twice.
	out, err = w.run("--rotation-time", day1.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		for _, id := range web {
			if n := len(w.ownImages(region)[id]); n != 1 {
				t.Errorf("after the rerun %d images of %s in %s, want 1", n, id, region)
			}
		}
	}

	// 4. --instance rotates only that instance; a day later retention
	//    (keep 1) deletes its day-1 images and no other instance's.
	only := web[0]
	j2 := filepath.Join(w.dir, "day2.json")
	out, err = w.run("--rotation-time", day2.Format(time.RFC3339), "--instance", only, "--json", j2)
	if err != nil {
		t.Fatalf("day 2: %v\n%s", err, out)
	}
	r2 := w.readJSON(j2)
	if r2.Summary.Instances != 1 || r2.Summary.ImagesCreated != 1 || r2.Summary.ImagesDeleted != 2 {
		t.Errorf("day 2 summary %+v; want 1 instance, 1 image, its 2 day-1 images deleted", r2.Summary)
	}
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		imgs := w.ownImages(region)
		for _, id := range web {
			if n := len(imgs[id]); n != 1 {
				t.Errorf("day 2: %s has %d images in %s, want 1", id, n, region)
			}
		}
	}
}

func TestRunCommand_FailsWhenTheExecutionFails(t *testing.T) {
	w := newRunWorld(t)
	web := w.fleet.InstanceIDs("web")
	bad := web[1]
	w.sim.FailNextImage("us-east-1", bad, "audit: injected failure")
	j := filepath.Join(w.dir, "failed.json")
	when := time.Now().UTC().Truncate(24 * time.Hour).Add(-24*time.Hour + 3*time.Hour)
	out, err := w.run("--rotation-time", when.Format(time.RFC3339), "--json", j)
	if err == nil {
		t.Fatalf("runRotation returned nil (exit 0) for a rotation with a failed image:\n%s", out)
	}
	if !strings.Contains(err.Error(), "FAILED") {
		t.Errorf("error %q does not say the execution failed", err)
	}
	r := w.readJSON(j)
	if r.Execution.Status != "FAILED" || !r.Summary.Failed || r.Summary.Outcomes["ok"] != len(web)-1 {
		t.Errorf("summary %+v, execution %s; want failed with %d ok", r.Summary, r.Execution.Status, len(web)-1)
	}
	found := false
	for _, row := range r.Rows {
		if row.InstanceID == bad && row.Region == "us-east-1" {
			found = true
			if row.State == "available" {
				t.Errorf("failed instance's row %+v says available", row)
			}
		}
	}
	if !found {
		t.Errorf("no row for the failed instance %s", bad)
	}
	if !strings.Contains(out, "failed: RotationFailed") {
		t.Errorf("stdout does not show the failure:\n%s", out)
	}
}
