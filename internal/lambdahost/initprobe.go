package lambdahost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// runtimeNext is the Lambda Runtime API call a runtime makes when it is
// ready for its first invocation (and every later one).
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html
const runtimeNext = "/2018-06-01/runtime/invocation/next"

// MeasureInit starts a built function (a provided.al2023 bootstrap) the way
// Lambda does, with AWS_LAMBDA_RUNTIME_API pointing at a local Runtime API,
// and returns the time from starting the process to its first request for
// an invocation: its init phase. The process is then stopped; it is never
// invoked. env is added to the environment (the function's variables).
func MeasureInit(ctx context.Context, bootstrap string, env []string) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	ready := make(chan time.Time, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == runtimeNext {
			select {
			case ready <- time.Now():
			default:
			}
			<-r.Context().Done() // no invocation comes
			return
		}
		http.NotFound(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bootstrap)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(append(os.Environ(), env...), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	exited := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", bootstrap, err)
	}
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	select {
	case at := <-ready:
		stop()
		return at.Sub(start), nil
	case err := <-exited:
		return 0, fmt.Errorf("%s exited before asking for an invocation (%v): %s", bootstrap, err, strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		stop()
		return 0, errors.Join(fmt.Errorf("%s never asked for an invocation", bootstrap), ctx.Err())
	}
}
