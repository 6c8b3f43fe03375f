package localrun

import (
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

// StepHandlers builds every step's handler from internal/steps, as
// functions/<name>/main.go wire them for Lambda, over one set of clients
// (the AWS configuration: a real account, or the simulator through
// AWS_ENDPOINT_URL_EC2 / _SSM / _AUTO_SCALING). now is the handlers' clock
// (nil = time.Now).
func StepHandlers(c *ec2x.Clients, now func() time.Time) map[string]any {
	if now == nil {
		now = time.Now
	}
	return map[string]any{
		"discover":  steps.NewDiscover(c, now).Handle,
		"snapshot":  steps.NewSnapshot(c, now).Handle,
		"poll":      steps.NewPoll(c, now).Handle,
		"copy":      steps.NewCopy(c, now).Handle,
		"tag":       steps.NewTag(c, now).Handle,
		"publish":   steps.NewPublish(c).Handle,
		"retention": steps.NewRetention(c, now).Invoke,
		"report":    steps.Report{}.Handle,
	}
}
