package lambdahost

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildReport builds the report function as `make build` builds every
// bootstrap (for this machine's architecture).
func buildReport(t *testing.T, ctx context.Context) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a function")
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, "./functions/report")
	build.Dir = "../.."
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	return bin
}

var reportEnv = []string{"AWS_REGION=us-east-1", "AMIROTATE_POLICY_DIGESTS=" + strings.Repeat("a", 64)}

// The built report function reaches the Runtime API's first
// invocation/next: that instant ends its init.
func TestMeasureInit_BuiltBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := MeasureInit(ctx, buildReport(t, ctx), reportEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("init %v", d)
	}
	t.Logf("init %v", d)
}

// The built report function takes one invocation over the Runtime API and
// answers it (here with the error its empty input deserves), and its peak
// resident memory is read from /proc before it is stopped.
func TestInvokeBuilt_AnswersAndPeakMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got, err := InvokeBuilt(ctx, buildReport(t, ctx), reportEnv, []byte(`{}`), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Failed || !strings.Contains(string(got.Response), "errorType") {
		t.Errorf("answer %s (failed %v), want an error document", got.Response, got.Failed)
	}
	// A Go process holds a few MiB at least; far more for this would be a
	// reading of something else.
	if got.MaxMemoryUsed < 1<<20 || got.MaxMemoryUsed > 256<<20 {
		t.Errorf("max memory used %d bytes", got.MaxMemoryUsed)
	}
	t.Logf("max memory used %.1f MiB: %s", float64(got.MaxMemoryUsed)/(1<<20), got.Response)
}

func TestMeasureInit_ExplainsAProcessThatExits(t *testing.T) {
	_, err := MeasureInit(context.Background(), "/bin/false", nil)
	if err == nil || !strings.Contains(err.Error(), "exited before asking for an invocation") {
		t.Fatalf("err %v", err)
	}
}
