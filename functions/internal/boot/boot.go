// Package boot is what every function's main shares: JSON logs that carry
// the Lambda request id, and the AWS configuration loaded once per cold
// start, before the first invocation.
package boot

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// Start sets up logging, loads the AWS configuration and serves the handler
// build makes from it. When the configuration cannot be loaded, every
// invocation answers a FatalError saying why (no panic: the state machine
// then reports a clear cause instead of Runtime.ExitError).
//
// The deployment pins its policies (rotation.PinsEnv); a function without
// them refuses every invocation rather than run whatever policy an
// execution input carries.
func Start[In, Out any](build func(*ec2x.Clients, steps.Env) func(context.Context, In) (Out, error)) {
	// JSON lines with the request id (the functions are deployed with
	// Lambda's JSON log format, which sets AWS_LAMBDA_LOG_FORMAT and the
	// level in AWS_LAMBDA_LOG_LEVEL).
	slog.SetDefault(lambdacontext.NewLogger())
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		slog.Error("loading the AWS configuration", "error", err)
		lambda.Start(failing[In, Out](err))
		return
	}
	pins, err := rotation.ParsePins(os.Getenv(rotation.PinsEnv))
	if err != nil {
		slog.Error("reading the pinned policies", "error", err)
		lambda.Start(failing[In, Out](err))
		return
	}
	lambda.Start(build(ec2x.NewClients(cfg), steps.Env{Now: time.Now, Policies: pins}))
}

func failing[In, Out any](err error) func(context.Context, In) (Out, error) {
	return func(context.Context, In) (Out, error) {
		var zero Out
		return zero, ec2x.FatalError{Message: fmt.Sprintf("starting the function: %v", err)}
	}
}
