package localrun

import (
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

// StepHandlers builds every step's handler from internal/steps, as
// functions/<name>/main.go wire them for Lambda, over one set of clients
// (the AWS configuration: a real account, or the simulator through
// AWS_ENDPOINT_URL_EC2 / _SSM / _AUTO_SCALING); each step gets c.As(step),
// its own identity when c has ec2x.WithLocalIdentities. env is the
// handlers' clock and pinned policies.
func StepHandlers(c *ec2x.Clients, env steps.Env) map[string]any {
	return map[string]any{
		ec2x.StepDiscover:  steps.NewDiscover(c.As(ec2x.StepDiscover), env).Handle,
		ec2x.StepScripts:   steps.NewScripts(c.As(ec2x.StepScripts), env).Handle,
		ec2x.StepSnapshot:  steps.NewSnapshot(c.As(ec2x.StepSnapshot), env).Handle,
		ec2x.StepPoll:      steps.NewPoll(c.As(ec2x.StepPoll), env).Handle,
		ec2x.StepCopy:      steps.NewCopy(c.As(ec2x.StepCopy), env).Handle,
		ec2x.StepVerify:    steps.NewVerify(c.As(ec2x.StepVerify), env).Handle,
		ec2x.StepTag:       steps.NewTag(c.As(ec2x.StepTag), env).Handle,
		ec2x.StepPublish:   steps.NewPublish(c.As(ec2x.StepPublish), env).Handle,
		ec2x.StepRoll:      steps.NewRoll(c.As(ec2x.StepRoll), env).Handle,
		ec2x.StepRetention: steps.NewRetention(c.As(ec2x.StepRetention), env).Invoke,
		ec2x.StepReport:    steps.Report{}.Handle,
	}
}
