package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

type runConfig struct {
	policyFile   string
	rotationTime time.Time
	instances    []string
	dryRun       bool
	backfill     bool
	jsonFile     string
	auditFile    string
}

func parseRunFlags(args []string, stderr io.Writer, now time.Time) (runConfig, error) {
	fs := newFlagSet("run", stderr, "Usage: amirotate run --policy FILE [--rotation-time RFC3339] [--instance ID]... [--dry-run] [--backfill] [--json FILE] [--audit FILE]\n\n"+
		"Runs one rotation through the real state machine, executed on this machine, against\n"+
		"the EC2 and SSM endpoints of the standard AWS configuration (your account, or\n"+
		"`amirotate sim` through AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_SSM).\n"+
		"Exits 0 only when the execution succeeded.\n\n")
	var c runConfig
	var when string
	var ids stringList
	fs.StringVar(&c.policyFile, "policy", "", "policy `file` (JSON)")
	fs.StringVar(&when, "rotation-time", "", "the rotation's `time` (RFC3339; default now, to the minute): a rerun with the same time finds what the first run made")
	fs.Var(&ids, "instance", "rotate only this instance `id` (repeatable; it must still match the policy)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "report what would happen, change nothing")
	fs.BoolVar(&c.backfill, "backfill", false, "also image instances whose newest image is of a later rotation (never made latest)")
	fs.StringVar(&c.jsonFile, "json", "", "also write the summary as JSON to `file`")
	fs.StringVar(&c.auditFile, "audit", "", "append the audit log (a JSON line per change made) to `file`")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see amirotate run -h)", fs.Arg(0))
	}
	if c.policyFile == "" {
		return c, errors.New("--policy is required: the policy file to rotate (see amirotate run -h)")
	}
	c.rotationTime = now.UTC().Truncate(time.Minute)
	if when != "" {
		t, err := time.Parse(time.RFC3339, when)
		if err != nil {
			return c, fmt.Errorf("--rotation-time %q: want RFC3339, like 2026-11-25T03:00:00Z", when)
		}
		c.rotationTime = t.UTC()
	}
	c.instances = ids
	return c, nil
}

// loadPolicy reads and validates a policy file, so a mistake is reported
// before anything starts.
func loadPolicy(path string) (rotation.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return rotation.Policy{}, err
	}
	p, err := rotation.DecodePolicy(data)
	if err != nil {
		return rotation.Policy{}, fmt.Errorf("policy %s:\n%w", path, err)
	}
	return p, nil
}

func runRotation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRunFlags(args, stderr, time.Now())
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	policy, err := loadPolicy(c.policyFile)
	if err != nil {
		return err
	}
	policy.DryRun = policy.DryRun || c.dryRun
	clients, err := checkedClients(ctx)
	if err != nil {
		return err
	}
	var auditLog io.Writer
	if c.auditFile != "" {
		f, err := os.OpenFile(c.auditFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("the audit log: %w", err)
		}
		defer f.Close()
		auditLog = f
	}
	rep, err := rotate(ctx, clients, rotateOptions{
		Policy: policy, RotationTime: c.rotationTime, InstanceIDs: c.instances, Backfill: c.backfill, Progress: stdout, Audit: auditLog,
	})
	if err != nil {
		return err
	}
	printReport(stdout, rep, 0)
	if c.jsonFile != "" {
		if err := writeJSON(c.jsonFile, rep); err != nil {
			return err
		}
	}
	if !rep.Execution.Succeeded() {
		return fmt.Errorf("the rotation %s: %s", rep.Execution.Status, rep.Execution.Cause)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// checkedClients are the clients of the AWS configuration, signing as each
// step's own local identity when the endpoint is a local simulator, after
// a first read proves the endpoint and credentials answer.
func checkedClients(ctx context.Context) (*ec2x.Clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	var opts []ec2x.Option
	if localEndpoint(os.Getenv) {
		opts = append(opts, ec2x.WithLocalIdentities())
	}
	clients := ec2x.NewClients(cfg, opts...)
	if err := ec2x.CheckAccess(ctx, clients); err != nil {
		return nil, err
	}
	return clients, nil
}

// localEndpoint tells whether EC2 calls go to this machine (a loopback
// AWS_ENDPOINT_URL_EC2, or AWS_ENDPOINT_URL): the local EC2, where each step
// then calls with its own identity, so that `amirotate sim --template`
// authorizes it as its function's role. Against AWS the configured
// credentials are used unchanged.
func localEndpoint(getenv func(string) string) bool {
	endpoint := getenv("AWS_ENDPOINT_URL_EC2")
	if endpoint == "" {
		endpoint = getenv("AWS_ENDPOINT_URL")
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
