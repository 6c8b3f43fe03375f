package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
)

func TestParseSimFlags_Defaults(t *testing.T) {
	c, err := parseSimFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "127.0.0.1:4566" || c.imageDelay != 3*time.Second || c.seedDemo || !slices.Equal(c.regions, ec2sim.DefaultRegions) {
		t.Errorf("defaults: got %+v", c)
	}
}

func TestParseSimFlags_RegionsTrimmedAndDeduplicated(t *testing.T) {
	c, err := parseSimFlags([]string{"--regions", " eu-west-1, us-east-1,eu-west-1,", "--seed-demo", "--image-delay", "250ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.regions, []string{"eu-west-1", "us-east-1"}) || !c.seedDemo || c.imageDelay != 250*time.Millisecond {
		t.Errorf("got %+v", c)
	}
}

// syncBuffer lets the test read what runSim prints while it runs.
type syncBuffer struct {
	lines chan string
}

func (b syncBuffer) Write(p []byte) (int, error) {
	b.lines <- string(p)
	return len(p), nil
}

// startSimCommand runs `amirotate sim` on a free port with args until ctx ends, and
// returns the endpoint it prints and where its result arrives.
func startSimCommand(t *testing.T, ctx context.Context, args ...string) (string, <-chan error) {
	t.Helper()
	out := syncBuffer{lines: make(chan string, 64)}
	done := make(chan error, 1)
	go func() {
		done <- runSim(ctx, append([]string{"--addr", "127.0.0.1:0", "--regions", "us-east-1"}, args...), out, io.Discard)
	}()
	for {
		select {
		case s := <-out.lines:
			if _, rest, ok := strings.Cut(s, "export AWS_ENDPOINT_URL_EC2="); ok {
				url, _, _ := strings.Cut(rest, "\n")
				return url, done
			}
		case err := <-done:
			t.Fatalf("runSim returned before serving: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no endpoint printed within 30s")
		}
	}
}

func TestRunSim_ServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	url, done := startSimCommand(t, ctx)
	resp, err := http.Get(url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /_sim/stats: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runSim after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runSim still running 10s after cancel")
	}
}

func TestParseSimFlags_StrictNeedsATemplate(t *testing.T) {
	if _, err := parseSimFlags([]string{"--strict"}, io.Discard); err == nil {
		t.Error("--strict without --template accepted")
	}
	c, err := parseSimFlags([]string{"--template", "local", "--strict"}, io.Discard)
	if err != nil || c.template != "local" || !c.strict {
		t.Errorf("got %+v, %v", c, err)
	}
}

// TestRunSim_EnforcesATemplate: with --template, a step's identity is held
// to its role, and --strict refuses callers without one.
func TestRunSim_EnforcesATemplate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, _ := startSimCommand(t, ctx, "--template", "local", "--strict")
	call := func(key string) error {
		cfg := ec2sim.AWSConfig(url, "us-east-1")
		cfg.Credentials = credentials.NewStaticCredentialsProvider(key, "local", "")
		_, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
		return err
	}
	if err := call(ec2x.LocalAccessKey(ec2x.StepDiscover)); err != nil {
		t.Errorf("discover may describe instances: %v", err)
	}
	if err := call(ec2x.LocalAccessKey(ec2x.StepCopy)); err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Errorf("copy described instances: %v", err)
	}
	if err := call("AKIDSOMEONE"); err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Errorf("strict: a caller without a role described instances: %v", err)
	}
}

func TestLocalEndpoint_OnlyLoopback(t *testing.T) {
	for url, want := range map[string]bool{
		"http://127.0.0.1:4566": true, "http://localhost:4566": true, "http://[::1]:4566": true,
		"https://ec2.us-east-1.amazonaws.com": false, "http://10.0.0.5:4566": false, "": false,
	} {
		env := map[string]string{"AWS_ENDPOINT_URL_EC2": url}
		if got := localEndpoint(func(k string) string { return env[k] }); got != want {
			t.Errorf("%q: %v, want %v", url, got, want)
		}
	}
	env := map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
	if !localEndpoint(func(k string) string { return env[k] }) {
		t.Error("AWS_ENDPOINT_URL not read")
	}
}
