// Command scripts is the scripts step's Lambda function: it runs the policy's pre and post scripts (SSM Run Command) around CreateImage.
// The handler is steps.Scripts (internal/steps); this file only wires it.
package main

import (
	"context"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients, env steps.Env) func(context.Context, steps.ScriptsIn) (steps.Batch, error) {
		return steps.NewScripts(c, env).Handle
	})
}
