package lambdahost

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The report function, built as `make build` builds every bootstrap (for
// this machine's architecture), reaches the Runtime API's first
// invocation/next: that instant ends its init.
func TestMeasureInit_BuiltBootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a function")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bin, "./functions/report")
	build.Dir = "../.."
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	d, err := MeasureInit(ctx, bin, []string{"AWS_REGION=us-east-1", "AMIROTATE_POLICY_DIGESTS=" + strings.Repeat("a", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("init %v", d)
	}
	t.Logf("init %v", d)
}

func TestMeasureInit_ExplainsAProcessThatExits(t *testing.T) {
	_, err := MeasureInit(context.Background(), "/bin/false", nil)
	if err == nil || !strings.Contains(err.Error(), "exited before asking for an invocation") {
		t.Fatalf("err %v", err)
	}
}
