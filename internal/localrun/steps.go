package localrun

import (
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

// StepHandlers builds every step's handler from internal/steps, as
// functions/<name>/main.go wire them for Lambda, over one set of clients
// (the AWS configuration: a real account, or the simulator through
// AWS_ENDPOINT_URL_EC2 / _SSM / _AUTO_SCALING). env is the handlers' clock
// and pinned policies.
func StepHandlers(c *ec2x.Clients, env steps.Env) map[string]any {
	return map[string]any{
		"discover":  steps.NewDiscover(c, env).Handle,
		"snapshot":  steps.NewSnapshot(c, env).Handle,
		"poll":      steps.NewPoll(c, env).Handle,
		"copy":      steps.NewCopy(c, env).Handle,
		"tag":       steps.NewTag(c, env).Handle,
		"publish":   steps.NewPublish(c, env).Handle,
		"retention": steps.NewRetention(c, env).Invoke,
		"report":    steps.Report{}.Handle,
	}
}
