package conformance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Regions the shared simulator serves. Each test keeps to its own regions
// so that tests running in parallel never see each other's AMI names:
// CLI v1 (and the seeded demo fleet) us-east-1 → eu-west-1, CLI v2
// us-west-2 → eu-central-1, the moto comparison ap-southeast-2 →
// ap-northeast-1.
var simRegions = []string{"us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-2", "ap-northeast-1"}

// simImageDelay keeps new images pending long enough for a CLI call to see
// them pending, and short enough for the waiters' second poll to see them
// available.
const simImageDelay = 2 * time.Second

var (
	binary string   // the amirotate binary built for these tests
	shared *simProc // the `amirotate sim --seed-demo` every test talks to
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "amirotate-conformance-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "amirotate")
	build := exec.Command("go", "build", "-o", binary, "./cmd/amirotate")
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building amirotate: %v\n%s", err, out)
	}
	shared, err = startSim("--seed-demo", "--image-delay", simImageDelay.String(), "--regions", strings.Join(simRegions, ","))
	if err != nil {
		return 0, err
	}
	code := m.Run()
	if err := shared.stop(); err != nil {
		return 0, fmt.Errorf("the shared simulator did not stop cleanly: %w\n%s", err, shared.output())
	}
	return code, nil
}

// moduleRoot is the repository root, two levels above this package.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// simProc is a running `amirotate sim`.
type simProc struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid once done is closed

	mu  sync.Mutex
	out strings.Builder // everything it printed
}

// startSim starts `amirotate sim --addr 127.0.0.1:0 args...`, reads the
// address it prints and waits until its admin endpoint answers.
func startSim(args ...string) (*simProc, error) {
	cmd := exec.Command(binary, append([]string{"sim", "--addr", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// Should the test binary die, the simulator goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &simProc{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = writerFunc(p.record)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting amirotate sim: %w", err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.record([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(strings.TrimSpace(line), "export AWS_ENDPOINT_URL_EC2="); ok {
				select {
				case urls <- u:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	// Seeding the demo fleet goes first, so allow for it.
	select {
	case p.url = <-urls:
	case <-p.done:
		return nil, fmt.Errorf("amirotate sim exited before serving (%v):\n%s", p.err, p.output())
	case <-time.After(30 * time.Second):
		_ = p.kill()
		return nil, fmt.Errorf("amirotate sim printed no AWS_ENDPOINT_URL_EC2 line within 30s:\n%s", p.output())
	}
	if err := waitHTTP(p.url+"/_sim/stats", 10*time.Second); err != nil {
		_ = p.kill()
		return nil, fmt.Errorf("amirotate sim at %s: %w\n%s", p.url, err, p.output())
	}
	return p, nil
}

func (p *simProc) record(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *simProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop interrupts the process as Ctrl-C would and waits for a clean exit.
func (p *simProc) stop() error {
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(10 * time.Second):
		_ = p.kill()
		return errors.New("still running 10s after SIGINT")
	}
}

func (p *simProc) kill() error {
	err := p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// waitHTTP polls url until it answers 200.
func waitHTTP(url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answering after %s: %w", within, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pyenvRoot is where the machine's Python (with AWS CLI v1 and moto) lives.
func pyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// inCI reports whether the tests run in CI, where a missing tool is a
// failure, never a reason to test less.
func inCI() bool { return os.Getenv("CI") == "true" }

// parallel runs fns concurrently and waits for all of them. The functions
// report through t.Errorf (safe from any goroutine); parallel stops the
// test when one of them failed, since later steps build on their results.
func parallel(t *testing.T, fns ...func()) {
	t.Helper()
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}
