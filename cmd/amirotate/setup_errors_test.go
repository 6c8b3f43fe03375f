package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/localrun"
)

// A person's first mistakes (nothing listening at the endpoint, a host that
// does not exist, no credentials, no region, credentials that expired) end
// `amirotate run` within seconds with one sentence that says what to fix,
// not after minutes of retries with the SDK's error chain.

// cleanAWSEnv leaves the test a configuration with only what it sets.
func cleanAWSEnv(t *testing.T) {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_SSM",
		"AWS_ENDPOINT_URL_AUTO_SCALING"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// refusedURL is an address nothing listens on.
func refusedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// runPlainly runs `amirotate run` and checks that it fails within limit
// with one line that contains want and none of the SDK's chain.
func runPlainly(t *testing.T, limit time.Duration, want ...string) {
	t.Helper()
	policy := filepath.Join(t.TempDir(), "web.json")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := runRotation(ctx, []string{"--policy", policy}, &stdout, &stderr)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("run succeeded; stdout:\n%s", stdout.String())
	}
	msg := err.Error()
	t.Logf("after %s: amirotate run: %s", took.Round(time.Millisecond), msg)
	if took > limit {
		t.Errorf("took %s, want under %s", took, limit)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
	for _, noise := range []string{"operation error", "FatalError", "get identity", "https response error", "dial tcp"} {
		if strings.Contains(msg, noise) {
			t.Errorf("message carries the SDK's chain (%q): %q", noise, msg)
		}
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q: %q", w, msg)
		}
	}
}

func TestRun_EndpointRefusingConnectionsSaysWhichAndEndsAtOnce(t *testing.T) {
	cleanAWSEnv(t)
	url := refusedURL(t)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_ENDPOINT_URL_EC2", url)
	runPlainly(t, 10*time.Second, "EC2 at "+url+" refuses connections", "AWS_ENDPOINT_URL_EC2")
}

func TestRun_UnknownHostSaysWhichAndEndsAtOnce(t *testing.T) {
	cleanAWSEnv(t)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_ENDPOINT_URL_EC2", "http://no-such-host.invalid:4566")
	runPlainly(t, 10*time.Second, "the host no-such-host.invalid does not exist", "AWS_ENDPOINT_URL_EC2")
}

func TestRun_NoCredentialsSaysHowToGiveThem(t *testing.T) {
	cleanAWSEnv(t)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL_EC2", refusedURL(t))
	runPlainly(t, 10*time.Second, "no AWS credentials found", "AWS_PROFILE")
}

func TestRun_NoRegionSaysToSetIt(t *testing.T) {
	cleanAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	runPlainly(t, 10*time.Second, "no AWS region: set AWS_REGION")
}

// An expired token: EC2 answers RequestExpired to every call.
func TestRun_ExpiredTokenSaysToRenewIt(t *testing.T) {
	cleanAWSEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, url, err := startSim(ctx, ec2sim.Options{Regions: demoRegions})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Inject(ec2sim.Fault{Code: "RequestExpired", Message: "Request has expired."}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_REGION", demoRegions[0])
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "expired")
	t.Setenv("AWS_ENDPOINT_URL_EC2", url)
	t.Setenv("AWS_ENDPOINT_URL_SSM", url)
	runPlainly(t, 10*time.Second, "credentials have expired (EC2 answered RequestExpired)", "renew them")
}

// A token that expires during the run: the handler classifies it, the state
// machine does not retry it, and the execution's cause is the same sentence.
func TestRun_TokenExpiringMidRunFailsWithTheSentence(t *testing.T) {
	w := newRunWorld(t)
	if err := w.sim.Inject(ec2sim.Fault{Action: "DescribeInstances", Code: "RequestExpired", Message: "Request has expired."}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := w.run()
	if err == nil {
		t.Fatalf("run succeeded:\n%s", out)
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "credentials have expired") || strings.Contains(out, "retried") {
		t.Errorf("want the sentence and no retry; err %v\n%s", err, out)
	}
	if strings.Contains(err.Error(), "FatalError: FatalError") || strings.Contains(out, "FatalError: FatalError") {
		t.Errorf("error name printed twice:\n%s", out)
	}
}

// Every retry line names what failed: the cause comes from the failure that
// precedes the retry (the retry event itself carries none).
func TestProgress_RetryLineShowsItsCause(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf)
	defer p.stop()
	p.event(localrun.Event{Type: "StateFailed", State: "Discover", StateType: "Task", Error: "RetryableError",
		Cause: "RetryableError: listing the instances of policy web in us-east-1: throttled"})
	p.event(localrun.Event{Type: "StateRetried", State: "Discover", StateType: "Task", Attempt: 1})
	p.event(localrun.Event{Type: "StateRetried", State: "Copy", StateType: "Task", Attempt: 1})
	out := buf.String()
	if !strings.Contains(out, "↻ Discover retried (attempt 1): RetryableError: listing the instances of policy web in us-east-1: throttled\n") {
		t.Errorf("retry line without its cause:\n%s", out)
	}
	if !strings.Contains(out, "↻ Copy retried (attempt 1): -\n") {
		t.Errorf("a retry with no failure seen still gets a line:\n%s", out)
	}
}
