// Command snapshot is the snapshot step's Lambda function: it starts CreateImage for each instance of a batch.
// The handler is steps.Snapshot (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewSnapshot(c, env).Handle
	})
}
