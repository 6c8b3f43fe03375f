package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

// localStackTemplate is the whole template infra synthesizes for the local
// world's deployment (internal/iamsim/deploy.json: policies web, db, fleet,
// bench, audit), kept up to date by infra's TestLocalTemplate_UpToDate.
const localStackTemplate = "../../internal/stack/testdata/local.template.json"

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLocalStack runs `amirotate sim --stack` and points the standard AWS
// configuration (the SDKs, the AWS CLI, the operator commands) at it.
func startLocalStack(t *testing.T) (string, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runSim(ctx, []string{"--addr", "127.0.0.1:0", "--regions", "us-east-1,eu-west-1,ap-southeast-2",
			"--stack", localStackTemplate, "--stack-name", "Local", "--image-delay", "200ms", "--wait-states", "200ms"}, out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("amirotate sim --stack: %v", err)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "AWS_ENDPOINT_URL_SFN=") {
		select {
		case err := <-done:
			t.Fatalf("amirotate sim --stack ended: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local stack did not start:\n%s", out.String())
		}
	}
	_, rest, _ := strings.Cut(out.String(), "export AWS_ENDPOINT_URL_EC2=")
	url, _, _ := strings.Cut(rest, "\n")
	for _, kv := range append(ec2sim.EnvVars(url, "us-east-1"), "AWS_ENDPOINT_URL_SFN="+url, "AWS_ENDPOINT_URL_CLOUDFORMATION="+url,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return url, out
}

func awsCLI(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err != nil {
		path = "/usr/bin/aws"
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type statusRows []statusRow

func status(t *testing.T, args ...string) (statusRows, string) {
	t.Helper()
	file := t.TempDir() + "/status.json"
	var out bytes.Buffer
	if err := runStatus(context.Background(), append([]string{"--stack-name", "Local", "--json", file}, args...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rows statusRows
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	return rows, out.String()
}

// settled waits until n executions exist and none is running.
func settled(t *testing.T, n int, log *lockedBuffer) statusRows {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		rows, _ := status(t, "--max", "100")
		running := 0
		for _, r := range rows {
			if r.Status == "RUNNING" {
				running++
			}
		}
		if len(rows) >= n && running == 0 {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions did not settle: %+v\n%s", rows, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func imagesOf(t *testing.T, c *ec2.Client, region, instance string) int {
	t.Helper()
	out, err := c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:" + rotation.TagInstanceID), Values: []string{instance}}}},
		func(o *ec2.Options) { o.Region = region })
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Images)
}

// The deployed stack, run locally: a tag change made with the AWS CLI
// rotates that instance and no other, a tag change outside every selector
// starts nothing, the clock moved past a schedule starts a scheduled
// rotation, and the operator commands list, start and follow them.
func TestLocalStack_EndToEnd(t *testing.T) {
	url, log := startLocalStack(t)
	c := ec2.NewFromConfig(ec2sim.AWSConfig(url, "us-east-1"))
	launch := func(tags map[string]string) string {
		var tt []ec2types.Tag
		for k, v := range tags {
			tt = append(tt, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		out, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(ec2sim.BaseImageID("us-east-1")),
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: tt}}})
		if err != nil {
			t.Fatal(err)
		}
		return *out.Instances[0].InstanceId
	}
	web1 := launch(map[string]string{"amirotate:policy": "web", "Name": "web-1"})
	web2 := launch(map[string]string{"amirotate:policy": "web", "Name": "web-2"})
	outside := launch(map[string]string{"Name": "not-managed"})

	// Outside every selector: nothing starts.
	awsCLI(t, "ec2", "create-tags", "--resources", outside, "--tags", "Key=amirotate:rebuild,Value=2026-11-25")
	time.Sleep(time.Second)
	if rows, _ := status(t); len(rows) != 0 {
		t.Fatalf("a tag change outside every selector started %+v", rows)
	}

	awsCLI(t, "ec2", "create-tags", "--resources", web1, "--tags", "Key=amirotate:rebuild,Value=2026-11-25")
	rows := settled(t, 1, log)
	if len(rows) != 1 || rows[0].Trigger != rotation.TriggerTagChange || rows[0].Status != "SUCCEEDED" || rows[0].Summary == nil ||
		rows[0].Summary.ImagesCreated != 1 || rows[0].Summary.CopiesCreated != 2 {
		t.Fatalf("after the rebuild tag: %+v\n%s", rows, log.String())
	}
	if n := imagesOf(t, c, "us-east-1", web1); n != 1 {
		t.Errorf("%d images of %s, want 1", n, web1)
	}
	for _, id := range []string{web2, outside} {
		if n := imagesOf(t, c, "us-east-1", id); n != 0 {
			t.Errorf("%d images of %s, which was not rebuilt", n, id)
		}
	}

	// Past web's schedule (cron(0 3 * * ? *), UTC) on the simulator's clock.
	var clock struct {
		Now time.Time `json:"now"`
	}
	resp, err := http.Get(url + "/_sim/clock")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&clock)
	resp.Body.Close()
	at := time.Date(clock.Now.Year(), clock.Now.Month(), clock.Now.Day(), 3, 0, 0, 0, time.UTC)
	if !at.After(clock.Now) {
		at = at.AddDate(0, 0, 1)
	}
	body, _ := json.Marshal(map[string]string{"set": at.Add(30 * time.Second).Format(time.RFC3339)})
	resp, err = http.Post(url+"/_sim/clock", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rows = settled(t, 3, log) // web's and db's schedules at least
	var scheduled *statusRow
	for i, r := range rows {
		if r.Trigger == rotation.TriggerSchedule && r.Policy == "web" {
			scheduled = &rows[i]
		}
	}
	if scheduled == nil || scheduled.Status != "SUCCEEDED" || scheduled.Summary.ImagesCreated != 2 {
		t.Fatalf("web's scheduled rotation: %+v\n%s", scheduled, log.String())
	}
	if n := imagesOf(t, c, "us-east-1", web2); n != 1 {
		t.Errorf("%d images of %s after the schedule, want 1", n, web2)
	}
	_, text := status(t, "--policy", "web")
	if !strings.Contains(text, "tag-change") || !strings.Contains(text, "schedule") || strings.Contains(text, " db ") {
		t.Errorf("amirotate status --policy web:\n%s", text)
	}

	// A manual rotation, followed to its end.
	var started bytes.Buffer
	if err := runStart(context.Background(), []string{"--policy", "web", "--stack-name", "Local"}, &started, io.Discard); err != nil {
		t.Fatal(err)
	}
	arn := strings.TrimSpace(started.String())
	var watched bytes.Buffer
	if err := runWatch(context.Background(), []string{arn, "--poll", "200ms"}, &watched, io.Discard); err != nil {
		t.Fatalf("watch: %v\n%s", err, watched.String())
	}
	for _, want := range []string{"→ Snapshot", `of policy "web" (manual)`, web1, web2, "images created 2", "execution SUCCEEDED"} {
		if !strings.Contains(watched.String(), want) {
			t.Errorf("watch does not show %q:\n%s", want, watched.String())
		}
	}
	// watch exits as run does: db's scheduled rotation had no instance.
	for _, r := range rows {
		if r.Policy == "db" {
			if err := runWatch(context.Background(), []string{r.Execution}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "FAILED") {
				t.Errorf("watch of db's failed rotation: %v", err)
			}
		}
	}

	// Clear errors.
	if err := runStart(context.Background(), []string{"--policy", "nope", "--stack-name", "Local"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "web") {
		t.Errorf("start of an undeployed policy: %v", err)
	}
	if err := runStatus(context.Background(), []string{"--stack-name", "Missing"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), `no stack "Missing"`) {
		t.Errorf("status of a missing stack: %v", err)
	}
}
