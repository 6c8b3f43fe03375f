// Command amirotate rotates EC2 AMIs: the local simulator, a local run of
// the real state machine, the read-only inventory (plan), rollback, the demo
// and the fleet benchmark.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `amirotate: scheduled, safe AMI rotation

Usage:
  amirotate sim   [--addr 127.0.0.1:4566] [--regions r1,r2] [--image-delay 3s] [--seed-demo] [--stack cdk.out/Amirotate.template.json]
  amirotate run   --policy FILE [--rotation-time RFC3339] [--instance ID]... [--dry-run] [--json FILE] [--audit FILE]
  amirotate plan  --policy FILE [--json FILE]
  amirotate rollback --policy FILE --instance ID [--region R]... [--to IMAGE] [--dry-run] [--clear] [--json FILE] [--audit FILE]
  amirotate demo
  amirotate bench [--instances 1000] [--regions 3] [--json FILE]

Over the Step Functions API of the deployed stack (or the local one, amirotate sim --stack):
  amirotate start  --policy NAME [--instance ID]... [--dry-run] [--stack-name Amirotate]
  amirotate status [--policy NAME] [--max 20] [--json FILE] [--stack-name Amirotate]
  amirotate watch  EXECUTION_ARN [--json FILE]

Run 'amirotate <command> -h' for a command's flags.
`

// commands maps each subcommand to its entry point; each lives in its own file.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"sim":      runSim,
	"run":      runRotation,
	"plan":     runPlan,
	"rollback": runRollback,
	"demo":     runDemo,
	"bench":    runBench,
	"start":    runStart,
	"status":   runStatus,
	"watch":    runWatch,
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "amirotate: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "amirotate %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// newFlagSet returns a command's flag set, which reports errors and prints
// usage (then the flags) on stderr.
func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}
