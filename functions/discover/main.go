// Command discover is the discover step's Lambda function: it validates the execution input and splits the policy's instances into batches.
// The handler is steps.Discover (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.DiscoverIn) (steps.DiscoverOut, error) {
		return steps.NewDiscover(c, env).Handle
	})
}
