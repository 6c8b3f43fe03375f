package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/ec2sim"
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

func TestRunSim_ServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := syncBuffer{lines: make(chan string, 64)}
	done := make(chan error, 1)
	go func() {
		done <- runSim(ctx, []string{"--addr", "127.0.0.1:0", "--regions", "us-east-1"}, out, io.Discard)
	}()

	var url string
	for url == "" {
		select {
		case s := <-out.lines:
			if _, rest, ok := strings.Cut(s, "export AWS_ENDPOINT_URL_EC2="); ok {
				url, _, _ = strings.Cut(rest, "\n")
			}
		case err := <-done:
			t.Fatalf("runSim returned before serving: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no endpoint printed within 10s")
		}
	}
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
