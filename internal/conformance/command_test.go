package conformance

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestSimCommand_PrintsHowToConnectAndStopsOnInterrupt starts its own
// `amirotate sim`, checks what it tells the user, and interrupts it as
// Ctrl-C would: it must exit 0.
func TestSimCommand_PrintsHowToConnectAndStopsOnInterrupt(t *testing.T) {
	t.Parallel()
	p, err := startSim("--regions", "eu-west-1,us-east-1", "--image-delay", "0s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export AWS_ENDPOINT_URL_EC2=" + p.url,
		"export AWS_ENDPOINT_URL_SSM=" + p.url,
		"export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test",
		"export AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1",
		"aws ec2 describe-images --owners amazon",
		p.url + "/_sim/stats",
	} {
		if !strings.Contains(p.output(), want) {
			t.Errorf("output lacks %q:\n%s", want, p.output())
		}
	}
	if err := p.stop(); err != nil {
		t.Fatalf("after SIGINT: %v\n%s", err, p.output())
	}
	if !strings.Contains(p.output(), "stopping") {
		t.Errorf("want a line saying it stops:\n%s", p.output())
	}
}

func TestSimCommand_RejectsBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"region name", []string{"--regions", "us-east-1,Mars"}, 1, `"Mars" is not a region name`},
		{"no region", []string{"--regions", " , "}, 1, "name at least one region"},
		{"negative delay", []string{"--image-delay", "-1s"}, 1, "must not be negative"},
		{"stray argument", []string{"now"}, 1, `unexpected argument "now"`},
		{"unknown flag", []string{"--port", "1"}, 1, "flag provided but not defined: -port"},
		{"address in use", []string{"--addr", strings.TrimPrefix(shared.url, "http://")}, 1, "listening on"},
		{"help", []string{"-h"}, 0, "Usage: amirotate sim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"sim"}, tt.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("amirotate sim %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}
