package lambdahost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The Lambda Runtime API a provided.al2023 bootstrap talks to.
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html
const (
	// runtimeNext is the call a runtime makes when it is ready for its
	// first invocation (and every later one).
	runtimeNext = "/2018-06-01/runtime/invocation/next"
	// runtimeInvocation prefixes /<request id>/response and /error.
	runtimeInvocation = "/2018-06-01/runtime/invocation/"
	// builtRequestID is the one invocation's request id.
	builtRequestID = "00000000-0000-4000-8000-000000000001"
)

// MeasureInit starts a built function (a provided.al2023 bootstrap) the way
// Lambda does, with AWS_LAMBDA_RUNTIME_API pointing at a local Runtime API,
// and returns the time from starting the process to its first request for
// an invocation: its init phase. The process is then stopped; it is never
// invoked. env is added to the environment (the function's variables).
func MeasureInit(ctx context.Context, bootstrap string, env []string) (time.Duration, error) {
	var d time.Duration
	err := runBuilt(ctx, bootstrap, env, 30*time.Second, func(p *builtProcess) error {
		at, err := p.next(nil)
		d = at.Sub(p.started)
		return err
	})
	return d, err
}

// BuiltInvocation is what one invocation of a built function gave.
type BuiltInvocation struct {
	// Response is the function's answer, or its error document when Failed.
	Response []byte
	Failed   bool
	// MaxMemoryUsed is the process's peak resident set size (VmHWM in
	// /proc/<pid>/status) from its start to its answer: what Lambda
	// reports as "Max Memory Used" and holds against the function's memory
	// size, the Go runtime, its heap and its garbage included.
	MaxMemoryUsed uint64
}

// InvokeBuilt starts a built function as MeasureInit does, hands it payload
// as its one invocation, and returns its answer and its peak memory. The
// process is then stopped. It needs Linux's /proc.
func InvokeBuilt(ctx context.Context, bootstrap string, env []string, payload []byte, timeout time.Duration) (BuiltInvocation, error) {
	var out BuiltInvocation
	err := runBuilt(ctx, bootstrap, env, timeout, func(p *builtProcess) error {
		if _, err := p.next(payload); err != nil {
			return err
		}
		select {
		case a := <-p.answers:
			out.Response, out.Failed = a.body, a.failed
		case <-p.exited:
			return fmt.Errorf("%s exited during its invocation (%v): %s", bootstrap, p.waitErr, p.stderrText())
		case <-p.ctx.Done():
			return errors.Join(fmt.Errorf("%s did not answer within %v", bootstrap, timeout), p.ctx.Err())
		}
		// The answer is posted before the runtime asks for the next
		// invocation; the peak is read before the process is stopped.
		hwm, err := PeakRSS(p.cmd.Process.Pid)
		out.MaxMemoryUsed = hwm
		return err
	})
	return out, err
}

// builtProcess is a bootstrap running against a local Runtime API.
type builtProcess struct {
	ctx     context.Context
	cmd     *exec.Cmd
	started time.Time
	// exited is closed when the process has exited, with waitErr set.
	exited  chan struct{}
	waitErr error
	stderr  *strings.Builder
	// nextCalls receives each invocation/next request, with a channel to
	// hand it its payload (nil: no invocation comes).
	nextCalls chan nextCall
	answers   chan builtAnswer
}

type nextCall struct {
	at      time.Time
	payload chan []byte
}

type builtAnswer struct {
	body   []byte
	failed bool
}

// next waits for the runtime's invocation/next and answers it with payload
// (nil: it is left waiting); it returns when the request came.
func (p *builtProcess) next(payload []byte) (time.Time, error) {
	select {
	case c := <-p.nextCalls:
		if payload != nil {
			c.payload <- payload
		}
		return c.at, nil
	case <-p.exited:
		return time.Time{}, fmt.Errorf("%s exited before asking for an invocation (%v): %s", p.cmd.Path, p.waitErr, p.stderrText())
	case <-p.ctx.Done():
		return time.Time{}, errors.Join(fmt.Errorf("%s never asked for an invocation", p.cmd.Path), p.ctx.Err())
	}
}

func (p *builtProcess) stderrText() string { return strings.TrimSpace(p.stderr.String()) }

// runBuilt serves a Runtime API, starts bootstrap against it with env, runs
// fn, and stops the process.
func runBuilt(ctx context.Context, bootstrap string, env []string, timeout time.Duration, fn func(*builtProcess) error) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := &builtProcess{ctx: ctx, exited: make(chan struct{}), stderr: &strings.Builder{},
		nextCalls: make(chan nextCall), answers: make(chan builtAnswer, 1)}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == runtimeNext:
			c := nextCall{at: time.Now(), payload: make(chan []byte, 1)}
			select {
			case p.nextCalls <- c:
			case <-r.Context().Done():
				return
			}
			select {
			case payload := <-c.payload:
				h := w.Header()
				h.Set("Lambda-Runtime-Aws-Request-Id", builtRequestID)
				h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(timeout).UnixMilli(), 10))
				h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:local")
				h.Set("Content-Type", "application/json")
				_, _ = w.Write(payload)
			case <-r.Context().Done(): // no invocation comes
			}
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, runtimeInvocation+builtRequestID+"/"):
			body, _ := io.ReadAll(r.Body)
			select {
			case p.answers <- builtAnswer{body: body, failed: strings.HasSuffix(r.URL.Path, "/error")}:
			default:
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	p.cmd = exec.CommandContext(ctx, bootstrap)
	p.cmd.WaitDelay = 5 * time.Second
	p.cmd.Env = append(append(os.Environ(), env...), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	p.cmd.Stderr = p.stderr
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bootstrap, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	defer func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}()
	return fn(p)
}

// PeakRSS reads a process's VmHWM (peak resident set) in bytes.
func PeakRSS(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the peak memory of process %d (needs Linux's /proc): %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
