// Command tag is the tag step's Lambda function: it marks the latest images, deprecates and shares them.
// The handler is steps.Tag (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.Batch) (steps.Batch, error) {
		return steps.NewTag(c, env).Handle
	})
}
