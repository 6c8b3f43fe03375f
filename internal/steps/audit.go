package steps

import (
	"context"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// The audit log: every mutating call a step makes writes one structured
// line (what, on which ids, where, for which policy and rotation, why, and
// how it ended), so that what a rotation changed can be read afterwards
// without EC2's own history. The lines go to Env.Audit, which the Lambda
// functions leave as the JSON default logger (CloudWatch Logs).

// AuditMessage is the message of every audit line, to filter them by.
const AuditMessage = "amirotate audit"

type auditKey struct{}

// auditScope is what every audit line of one invocation shares.
type auditScope struct {
	log              *slog.Logger
	policy, rotation string
}

// auditing returns ctx carrying the invocation's audit scope: the logger
// (with the Lambda request id, when there is one), the policy and the
// rotation.
func (e Env) auditing(ctx context.Context, policy, rotationID string) context.Context {
	log := e.Audit
	if log == nil {
		log = slog.Default()
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		log = log.With("requestId", lc.AwsRequestID)
	}
	return context.WithValue(ctx, auditKey{}, auditScope{log: log, policy: policy, rotation: rotationID})
}

// audit writes the line of one mutating call, after it returned err.
// NotFound is its own result: deleting what is gone is success.
func audit(ctx context.Context, action, region string, ids []string, reason string, err error) {
	s, _ := ctx.Value(auditKey{}).(auditScope)
	if s.log == nil {
		s.log = slog.Default()
	}
	level, result := slog.LevelInfo, "ok"
	attrs := []slog.Attr{
		slog.String("action", action),
		slog.Any("ids", ids),
		slog.String("region", region),
		slog.String("policy", s.policy),
		slog.String("rotation", s.rotation),
		slog.String("reason", reason),
	}
	switch {
	case err == nil:
	case ec2x.IsNotFound(err):
		result = "not-found"
	default:
		level, result = slog.LevelWarn, "error"
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.log.LogAttrs(ctx, level, AuditMessage, append(attrs, slog.String("result", result))...)
}
