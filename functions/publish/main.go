// Command publish is the publish step's Lambda function: it publishes the
// new image ids to SSM parameters and tracked launch templates.
// The handler is steps.Publish (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewPublish(c, env).Handle
	})
}
