// Command poll is the poll step's Lambda function: it checks the batch's pending images and cleans up failed ones.
// The handler is steps.Poll (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewPoll(c, env).Handle
	})
}
