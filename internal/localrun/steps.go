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
		ec2x.StepDiscover:  steps.NewDiscover(c, env).Handle,
		ec2x.StepSnapshot:  steps.NewSnapshot(c, env).Handle,
		ec2x.StepPoll:      steps.NewPoll(c, env).Handle,
		ec2x.StepCopy:      steps.NewCopy(c, env).Handle,
		ec2x.StepTag:       steps.NewTag(c, env).Handle,
		ec2x.StepPublish:   steps.NewPublish(c, env).Handle,
		ec2x.StepRetention: steps.NewRetention(c, env).Invoke,
		ec2x.StepReport:    steps.Report{}.Handle,
	}
}
