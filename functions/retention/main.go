// Command retention is the retention step's Lambda function: it deregisters
// images past the policy's retention and deletes their snapshots. One
// function serves both retention states of the state machine: a batch
// (steps.Retention.Handle) and the pass over the policy's other instances
// (steps.Retention.HandleOthers).
package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(c *ec2x.Clients) func(context.Context, json.RawMessage) (any, error) {
		r := &steps.Retention{Clients: c, Now: time.Now}
		return route(r.Handle, r.HandleOthers)
	})
}

// route tells the two inputs apart by "exclude", which only the others pass
// has (a Batch never does), as the local runner does.
func route(
	batch func(context.Context, steps.Batch) (steps.Batch, error),
	others func(context.Context, steps.RetentionOthersIn) (steps.RetentionOthersOut, error),
) func(context.Context, json.RawMessage) (any, error) {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			Exclude json.RawMessage `json:"exclude"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, rotation.Invalid("", "retention input: %v", err)
		}
		if probe.Exclude != nil {
			var in steps.RetentionOthersIn
			if err := json.Unmarshal(raw, &in); err != nil {
				return nil, rotation.Invalid("", "retention input (others pass): %v", err)
			}
			return others(ctx, in)
		}
		var b steps.Batch
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, rotation.Invalid("", "retention input (batch): %v", err)
		}
		return batch(ctx, b)
	}
}
