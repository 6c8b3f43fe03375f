// Command copy is the copy step's Lambda function: it starts the cross-region copies of available images.
// The handler is steps.Copy (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewCopy(c, env).Handle
	})
}
