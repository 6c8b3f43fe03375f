package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/amirotate/amirotate/internal/demofleet"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/iamsim"
)

// demoRegions: the fleet's home and the two regions the policies copy to.
var demoRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

// startSim serves a simulator on a free loopback port until ctx ends.
func startSim(ctx context.Context, opts ec2sim.Options) (*ec2sim.Sim, string, error) {
	sim := ec2sim.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return sim, "http://" + ln.Addr().String(), nil
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("quiet", false, "print only the summaries, not the live progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	sim, url, err := startSim(ctx, ec2sim.Options{Regions: demoRegions, ImageDelay: time.Second})
	if err != nil {
		return err
	}
	// The simulator enforces the synthesized roles; the steps call as them.
	iam, err := iamsim.Enforce(sim, nil)
	if err != nil {
		return err
	}
	cfg := ec2sim.AWSConfig(url, demoRegions[0])
	fleet, err := demofleet.Seed(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Local EC2 at %s (regions %v). Seeded %d instances in %s; launch template %s tracks %s.\n",
		url, demoRegions, len(fleet.Instances), fleet.Region, fleet.LaunchTemplateID, fleet.TrackedInstance)
	for _, in := range fleet.Instances {
		fmt.Fprintf(stdout, "  %s  %-6s policy %s\n", in.ID, in.Name, in.Policy)
	}

	var progress io.Writer = stdout
	if *quiet {
		progress = nil
	}
	clients := ec2x.NewClients(cfg, ec2x.WithLocalIdentities())
	waitMs := 1000 // the simulator's images take about a second, not minutes
	// Two nightly rotations at 03:00 UTC, the day before yesterday and
	// yesterday: a rotation's time may not lie in the future.
	day1 := time.Now().UTC().Truncate(24 * time.Hour).Add(-48*time.Hour + 3*time.Hour)
	failed := 0
	for day, when := range []time.Time{day1, day1.Add(24 * time.Hour)} {
		for _, policy := range fleet.Policies {
			fmt.Fprintf(stdout, "\n=== Day %d: rotation %s of policy %s ===\n", day+1, when.Format(time.RFC3339), policy.Name)
			rep, err := rotate(ctx, clients, rotateOptions{Policy: policy, RotationTime: when, WaitMs: &waitMs, Progress: progress})
			if err != nil {
				return err
			}
			printReport(stdout, rep, 0)
			if !rep.Execution.Succeeded() {
				failed++
			}
		}
	}
	st := sim.Stats()
	fmt.Fprintf(stdout, "\nDemo done in %s: %d EC2/SSM calls to the local endpoint, %d throttled, each authorized as its function's IAM role.\n",
		time.Since(start).Round(time.Second), st.Total(""), st.Throttled)
	if err := iam.DenialsError(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d rotations failed", failed)
	}
	return nil
}
