package localrun

import (
	"context"
	"encoding/json"
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
		"discover":  (&steps.Discover{Clients: c, Now: now}).Handle,
		"snapshot":  (&steps.Snapshot{Clients: c, Now: now}).Handle,
		"poll":      (&steps.Poll{Clients: c, Now: now}).Handle,
		"copy":      (&steps.Copy{Clients: c, Now: now}).Handle,
		"tag":       (&steps.Tag{Clients: c, Now: now}).Handle,
		"publish":   (&steps.Publish{Clients: c}).Handle,
		"retention": retentionHandler(&steps.Retention{Clients: c, Now: now}),
		"report":    steps.Report{}.Handle,
	}
}

// retentionHandler serves both retention states with one function, as the
// one retention Lambda does: the pass over other instances is told apart by
// its "exclude" field, which a Batch never has.
func retentionHandler(r *steps.Retention) func(context.Context, json.RawMessage) (any, error) {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			Exclude *json.RawMessage `json:"exclude"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, err
		}
		if probe.Exclude != nil {
			var in steps.RetentionOthersIn
			if err := json.Unmarshal(raw, &in); err != nil {
				return nil, err
			}
			return r.HandleOthers(ctx, in)
		}
		var b steps.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, err
		}
		return r.Handle(ctx, b)
	}
}
