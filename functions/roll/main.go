// Command roll is the roll step's Lambda function: it starts and follows
// the instance refreshes of the Auto Scaling groups that launch the launch
// templates publish moved.
// The handler is steps.Roll (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewRoll(c, env).Handle
	})
}
