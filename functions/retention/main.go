// Command retention is the retention step's Lambda function: it deregisters
// images past the policy's retention and deletes their snapshots. One
// function serves both retention states of the state machine: a batch
// (steps.Retention.Handle) and the pass over the policy's other instances
// (steps.Retention.HandleOthers).
package main

import (
	"context"
	"encoding/json"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, json.RawMessage) (any, error) {
		return steps.NewRetention(c, env).Invoke
	})
}
