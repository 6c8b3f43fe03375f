package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

// TestCLI_InjectedFaults sets fault rules through the admin endpoint and
// checks how each CLI meets them: RequestLimitExceeded (503) is retried
// and the call succeeds; UnauthorizedOperation (403) is not retried and
// surfaces with its code. The rules name an action and region no other
// test uses, so tests running alongside never meet them.
func TestCLI_InjectedFaults(t *testing.T) {
	t.Parallel()
	const region = "ap-northeast-1"
	for _, major := range []int{1, 2} {
		c := requireCLI(t, major)
		before := simStats(t).Faulted
		injectFault(t, `{"action":"DescribeTags","region":"`+region+`","code":"RequestLimitExceeded","count":1}`)
		c.ok(t, region, nil, "ec2", "describe-tags")
		if got := simStats(t).Faulted - before; got != 1 {
			t.Errorf("CLI v%d: want exactly the one injected fault answered, got %d", major, got)
		}
		injectFault(t, `{"action":"DescribeTags","region":"`+region+`","code":"UnauthorizedOperation","count":1}`)
		c.fails(t, region, "UnauthorizedOperation", "ec2", "describe-tags")
	}
}

type simStatsDoc struct {
	Calls     map[string]map[string]int `json:"calls"`
	Throttled int                       `json:"throttled"`
	Faulted   int                       `json:"faulted"`
}

func simStats(t *testing.T) simStatsDoc {
	t.Helper()
	resp, err := http.Get(shared.url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s simStatsDoc
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("GET /_sim/stats: %v", err)
	}
	return s
}

func injectFault(t *testing.T, rule string) {
	t.Helper()
	resp, err := http.Post(shared.url+"/_sim/faults", "application/json", strings.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /_sim/faults %s: %s %s", rule, resp.Status, body)
	}
}
