package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

func TestAudit_LineCarriesScopeRequestIDAndResult(t *testing.T) {
	var buf bytes.Buffer
	env := Env{Audit: slog.New(slog.NewJSONHandler(&buf, nil))}
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	ctx = env.auditing(ctx, "web", "20261125T0300Z")
	audit(ctx, "DeregisterImage", "eu-west-1", []string{"ami-1"}, "retention: expired", errors.New("UnauthorizedOperation"))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := map[string]any{"msg": AuditMessage, "level": "WARN", "requestId": "req-1", "action": "DeregisterImage", "region": "eu-west-1",
		"policy": "web", "rotation": "20261125T0300Z", "reason": "retention: expired", "result": "error", "error": "UnauthorizedOperation"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, line[k], v, buf.String())
		}
	}
}
