package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/amirotate/amirotate/internal/demofleet"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
	"github.com/amirotate/amirotate/internal/stack"
)

// regionName accepts names shaped like AWS regions (us-east-1, us-gov-west-1).
var regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)

// simConfig is the parsed command line of `amirotate sim`.
type simConfig struct {
	addr       string
	regions    []string
	imageDelay time.Duration
	seedDemo   bool
	// template, when set, is the synthesized CloudFormation template whose
	// function roles the simulator enforces ("local": the embedded one).
	template string
	strict   bool
	// stack, when set, is a synthesized template run as the local stack
	// (its state machine, schedules and tag-change rules) named stackName;
	// waitStates, when set, is how long its Wait states last.
	stack      string
	stackName  string
	waitStates time.Duration
}

func parseSimFlags(args []string, stderr io.Writer) (simConfig, error) {
	fs := newFlagSet("sim", stderr, "Usage: amirotate sim [--addr 127.0.0.1:4566] [--regions r1,r2,...] [--image-delay 3s] [--seed-demo] [--template FILE|local [--strict]]\n"+
		"       amirotate sim --stack cdk.out/Amirotate.template.json [--stack-name Amirotate] [--wait-states 2s] [...]\n\n"+
		"Serves a local EC2 + SSM Parameter Store endpoint for every region at one address\n"+
		"until interrupted. Admin endpoints: GET /_sim/stats, POST /_sim/reset,\n"+
		"POST /_sim/faults, POST /_sim/throttling, POST /_sim/clock.\n\n"+
		"With --stack it runs the synthesized stack on the same endpoint: the Step Functions API\n"+
		"for its state machine, its schedules on the simulator's clock, its tag-change rules on\n"+
		"the instances' tag changes, and its roles enforced.\n\n")
	var c simConfig
	var regions string
	fs.StringVar(&c.addr, "addr", "127.0.0.1:4566", "`host:port` to listen on (port 0 picks a free one)")
	fs.StringVar(&regions, "regions", strings.Join(ec2sim.DefaultRegions, ","), "comma-separated `regions` to serve; the first answers unsigned requests")
	fs.DurationVar(&c.imageDelay, "image-delay", 3*time.Second, "how long a new 8 GiB image stays pending (bigger volumes and copies take longer; 0 = available at once)")
	fs.BoolVar(&c.seedDemo, "seed-demo", false, "launch the demo fleet (5 tagged instances in policies web and db, a tracked launch template) in the first region")
	fs.StringVar(&c.template, "template", "", "authorize the calls of each step (`amirotate run` signs as them) against its role in this synthesized CloudFormation `template` (cdk.out/Amirotate.template.json; \"local\" = the one the tests enforce)")
	fs.BoolVar(&c.strict, "strict", false, "with --template or --stack: deny callers that are no step's role too (default: they may do anything)")
	fs.StringVar(&c.stack, "stack", "", "run this synthesized CloudFormation `template` as the local stack (make synth writes cdk.out/Amirotate.template.json)")
	fs.StringVar(&c.stackName, "stack-name", "Amirotate", "with --stack: the stack's `name` (what CloudFormation's DescribeStacks answers to)")
	fs.DurationVar(&c.waitStates, "wait-states", 0, "with --stack: every Wait state of an execution lasts this `long` (0: as the execution says)")
	if err := fs.Parse(args); err != nil {
		return simConfig{}, err
	}
	if fs.NArg() > 0 {
		return simConfig{}, fmt.Errorf("unexpected argument %q (see amirotate sim -h)", fs.Arg(0))
	}
	if c.strict && c.template == "" && c.stack == "" {
		return simConfig{}, errors.New("--strict needs --template or --stack")
	}
	if c.stack != "" && c.template != "" {
		return simConfig{}, errors.New("--stack enforces the roles of its own template: leave out --template")
	}
	if c.waitStates < 0 {
		return simConfig{}, fmt.Errorf("--wait-states %s: must not be negative", c.waitStates)
	}
	if c.imageDelay < 0 {
		return simConfig{}, fmt.Errorf("--image-delay %s: must not be negative", c.imageDelay)
	}
	seen := map[string]bool{}
	for _, r := range strings.Split(regions, ",") {
		r = strings.TrimSpace(r)
		if r == "" || seen[r] {
			continue
		}
		if !regionName.MatchString(r) {
			return simConfig{}, fmt.Errorf("--regions: %q is not a region name like us-east-1", r)
		}
		seen[r] = true
		c.regions = append(c.regions, r)
	}
	if len(c.regions) == 0 {
		return simConfig{}, errors.New("--regions: name at least one region, e.g. us-east-1,eu-west-1")
	}
	return c, nil
}

// runSim serves the simulator until ctx ends, then shuts the server down
// gracefully so that in-flight requests still get their answer.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseSimFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	delay := c.imageDelay
	if delay == 0 {
		delay = -1 // the simulator reads a negative delay as "at once" and zero as "default"
	}
	opts := ec2sim.Options{Regions: c.regions, ImageDelay: delay}
	if c.stack != "" {
		// Schedules fire on the simulator's clock: one that runs, and
		// that POST /_sim/clock can move forward.
		opts.Clock = ec2sim.NewShiftedClock()
	}
	sim := ec2sim.New(opts)
	var local *stack.Template
	if c.stack != "" {
		raw, err := os.ReadFile(c.stack)
		if err != nil {
			return fmt.Errorf("--stack: %w (make synth writes cdk.out/Amirotate.template.json)", err)
		}
		if local, err = stack.ParseTemplate(raw, c.stackName, ec2sim.AccountID, c.regions[0]); err != nil {
			return fmt.Errorf("--stack %s: %w", c.stack, err)
		}
		enf, err := iamsim.Enforce(sim, raw)
		if err != nil {
			return fmt.Errorf("--stack %s: %w", c.stack, err)
		}
		enf.Strict = c.strict
	}
	if c.template != "" {
		var tmpl []byte // nil: the embedded local template
		if c.template != "local" {
			if tmpl, err = os.ReadFile(c.template); err != nil {
				return err
			}
		}
		enf, err := iamsim.Enforce(sim, tmpl)
		if err != nil {
			return fmt.Errorf("--template %s: %w", c.template, err)
		}
		enf.Strict = c.strict
		fmt.Fprintf(stdout, "Enforcing the roles of %s: %s (access keys %s)\n", c.template, strings.Join(enf.Roles().Steps(), ", "), ec2x.LocalAccessKey("<step>"))
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.addr, err)
	}
	url := "http://" + ln.Addr().String()
	var handler http.Handler = sim
	var st *stack.Stack
	if local != nil {
		if st, err = newLocalStack(local, sim, url, c, stdout, stderr); err != nil {
			_ = ln.Close()
			return err
		}
		handler = st
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stackDone := make(chan error, 1)
	if st != nil {
		go func() { stackDone <- st.Run(ctx) }()
	}

	if c.seedDemo {
		fleet, err := demofleet.Seed(ctx, ec2sim.AWSConfig(url, c.regions[0]))
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("seeding the demo fleet: %w", err)
		}
		printFleet(stdout, fleet)
	}
	printHowTo(stdout, url, c)
	if st != nil {
		printStack(stdout, st, url, sim.Now(), c)
	}

	select {
	case err := <-served:
		return fmt.Errorf("serving %s: %w", url, err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stdout, "amirotate sim: stopping")
	if st != nil {
		<-stackDone // the executions still running are aborted
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

func printFleet(w io.Writer, f demofleet.Fleet) {
	fmt.Fprintf(w, "Demo fleet in %s (from %s):\n", f.Region, f.BaseImageID)
	for _, in := range f.Instances {
		extra := ""
		if in.DataVolumeGiB > 0 {
			extra = fmt.Sprintf(", data volume %d GiB", in.DataVolumeGiB)
		}
		fmt.Fprintf(w, "  %s  %-6s policy %s%s\n", in.ID, in.Name, in.Policy, extra)
	}
	fmt.Fprintf(w, "  %s  launch template %s, tracks %s\n", f.LaunchTemplateID, f.LaunchTemplateName, f.TrackedInstance)
	fmt.Fprintf(w, "  policies: ")
	for i, p := range f.Policies {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprint(w, p.Name)
	}
	fmt.Fprint(w, " (internal/demofleet/policies/)\n\n")
}

func printHowTo(w io.Writer, url string, c simConfig) {
	home := c.regions[0]
	fmt.Fprintf(w, `amirotate sim: EC2 + SSM Parameter Store on %[1]s
  regions: %[2]s; new images stay pending %[3]s (longer for big volumes and copies)

Point the AWS SDKs and CLI at it:

  export AWS_ENDPOINT_URL_EC2=%[1]s
  export AWS_ENDPOINT_URL_SSM=%[1]s
  export AWS_ENDPOINT_URL_AUTO_SCALING=%[1]s
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION=%[4]s AWS_DEFAULT_REGION=%[4]s

  aws ec2 describe-images --owners amazon

  (AWS CLI v2 older than 2.13 ignores AWS_ENDPOINT_URL_*: add --endpoint-url %[1]s)

Admin: curl %[1]s/_sim/stats  (also POST /_sim/reset, /_sim/faults, /_sim/throttling)
Press Ctrl-C to stop.
`, url, strings.Join(c.regions, ", "), c.imageDelay, home)
}
