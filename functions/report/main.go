// Command report is the report step's Lambda function: it summarizes a
// batch or a whole rotation. It calls no AWS API: the rotation's metrics go
// to standard output in the embedded metric format, which CloudWatch Logs
// turns into metrics.
// The handler is steps.Report (internal/steps); this file only wires it.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/amirotate/amirotate/functions/internal/boot"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

func main() {
	boot.Start(func(*ec2x.Clients, steps.Env) func(context.Context, steps.ReportIn) (json.RawMessage, error) {
		return steps.Report{Metrics: os.Stdout}.Handle
	})
}
