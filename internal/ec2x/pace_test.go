package ec2x

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/sync/errgroup"

	"github.com/amirotate/amirotate/internal/ec2limits"
	"github.com/amirotate/amirotate/internal/ec2sim"
)

// jumpClock is the simulator's manual clock, and the pacer's: a wait moves
// it to its wake-up time at once. The pacer's waits take no real time, and
// the simulator's buckets refill by exactly the time the pacer waited, so
// how fast the machine runs changes nothing but the test's duration.
type jumpClock struct{ *ec2sim.ManualClock }

func (c jumpClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	c.Set(t)
	return nil
}

// fakeClock is a pacer clock that moves only when the test advances it.
// Each wait reports its wake-up time on waits as it starts.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	moved chan struct{} // closed, and replaced, on every Advance
	waits chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{
		now:   time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC),
		moved: make(chan struct{}),
		waits: make(chan time.Time, 100),
	}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	close(c.moved)
	c.moved = make(chan struct{})
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.waits <- t
	for {
		c.mu.Lock()
		now, moved := c.now, c.moved
		c.mu.Unlock()
		if !now.Before(t) {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// createImageBucket is EC2's CreateImage bucket: 50 tokens, 5 per second.
var _, createImageBucket = ec2limits.Request("CreateImage", true)

// burstCreateImage sends n CreateImage calls as the snapshot step does for
// a batch (Workers calls in flight) to a simulator with EC2's throttling on,
// running on clock, and returns the simulator's count of throttled answers
// and the calls that failed.
func burstCreateImage(t *testing.T, n int, clock *ec2sim.ManualClock, opts ...Option) (throttled, failed int) {
	t.Helper()
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1"}, Clock: clock})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	inst, err := sim.RunInstance("us-east-1", ec2sim.InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	sim.SetThrottling(true)
	client := NewClients(ec2sim.AWSConfig(srv.URL, "us-east-1"), append(opts, WithBackoff(noDelay{}))...).EC2("")

	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(Workers)
	for i := range n {
		g.Go(func() error {
			_, err := client.CreateImage(context.Background(), &ec2.CreateImageInput{
				InstanceId: aws.String(inst), Name: aws.String(fmt.Sprintf("burst-%03d", i)), NoReboot: aws.Bool(true),
			})
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return sim.Stats().Throttled, failed
}

func TestPacer_BurstAboveTheBucketIsNeverThrottled(t *testing.T) {
	// 120 calls against CreateImage's bucket: the pacer's burst (one
	// second's refill less than EC2's 50) leaves 75 calls waiting for
	// refills at 5/s.
	const n = 120
	clock := ec2sim.NewManualClock(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	start := clock.Now()
	throttled, failed := burstCreateImage(t, n, clock, withPaceClock(jumpClock{clock}))
	if throttled != 0 || failed != 0 {
		t.Errorf("paced burst of %d: %d answers RequestLimitExceeded, %d calls failed; want none", n, throttled, failed)
	}
	// The pacer waited for the refills, and no longer: the last call went
	// out when its token came.
	burst := createImageBucket.Capacity - createImageBucket.Refill
	want := time.Duration((n - burst) / createImageBucket.Refill * float64(time.Second))
	if got := clock.Now().Sub(start); got < want || got > want+time.Millisecond {
		t.Errorf("paced burst waited %s, want %s (%g calls beyond the burst at %g/s)", got, want, n-burst, createImageBucket.Refill)
	}
}

func TestPacer_WithoutPacingTheSameBurstIsThrottled(t *testing.T) {
	// The clock never moves: the bucket never refills, so every call beyond
	// its 50 tokens is throttled on each attempt.
	const n = 120
	clock := ec2sim.NewManualClock(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	throttled, failed := burstCreateImage(t, n, clock, WithoutPacing())
	if beyond := n - int(createImageBucket.Capacity); throttled < beyond || failed != beyond {
		t.Fatalf("unpaced burst of %d: %d answers RequestLimitExceeded, %d calls failed; want at least %d and %d: the paced test proves nothing",
			n, throttled, failed, beyond, beyond)
	}
	t.Logf("unpaced: %d answers RequestLimitExceeded", throttled)
}

// copyImageServer accepts every CopyImage, or throttles every call, and
// counts the requests.
func copyImageServer(t *testing.T, throttle bool) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		if throttle {
			w.WriteHeader(503)
			fmt.Fprint(w, `<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>`)
			return
		}
		fmt.Fprint(w, `<CopyImageResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><imageId>ami-0123456789abcdef0</imageId></CopyImageResponse>`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func testConfig(url string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(url),
	}
}

var copyInput = &ec2.CopyImageInput{Name: aws.String("n"), SourceImageId: aws.String("ami-1"), SourceRegion: aws.String("us-east-1")}

// copyImageBurst is the pacer's CopyImage burst: EC2's 100 tokens less one
// second's refill.
const copyImageBurst = 99

// drainedCopyImage returns a client on clock whose pacer has spent its
// CopyImage burst, so that the next call waits a second for a refill, and
// the count of requests the server received.
func drainedCopyImage(t *testing.T, clock *fakeClock) (*Clients, *atomic.Int32) {
	t.Helper()
	srv, n := copyImageServer(t, false)
	clients := NewClients(testConfig(srv.URL), withPaceClock(clock))
	for i := range copyImageBurst {
		if _, err := clients.EC2("").CopyImage(context.Background(), copyInput); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	if len(clock.waits) != 0 {
		t.Fatalf("a call within the burst waited")
	}
	return clients, n
}

// copyImageTokens is what the pacer's CopyImage bucket holds at the clock's now.
func copyImageTokens(c *Clients, clock paceClock) float64 {
	return c.pace.limiter("us-east-1", "CopyImage").TokensAt(clock.Now())
}

// startCopyImage sends one CopyImage on ctx and returns where its error will
// arrive.
func startCopyImage(c *Clients, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.EC2("").CopyImage(ctx, copyInput)
		done <- err
	}()
	return done
}

// awaitWait returns the wake-up time of the pacer's next wait; it fails the
// test if the call ends instead or nothing happens for a long while.
func awaitWait(t *testing.T, clock *fakeClock, done <-chan error) time.Time {
	t.Helper()
	select {
	case wake := <-clock.waits:
		return wake
	case err := <-done:
		t.Fatalf("the call returned (err = %v) without waiting for a token", err)
	case <-time.After(time.Minute):
		t.Fatal("the call neither waited for a token nor returned")
	}
	return time.Time{}
}

func TestPacer_WaitsOneRefillForTheNextToken(t *testing.T) {
	clock := newFakeClock()
	clients, n := drainedCopyImage(t, clock)

	// A deadline with room for the wait does not cut it short.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
	defer cancel()
	done := startCopyImage(clients, ctx)
	if wake, want := awaitWait(t, clock, done), clock.Now().Add(time.Second); !wake.Equal(want) {
		t.Errorf("the call waits until %s, want %s (one token at 1/s)", wake, want)
	}
	if got := n.Load(); got != copyImageBurst {
		t.Errorf("%d requests reached the server during the wait, want %d", got, copyImageBurst)
	}
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	if got := n.Load(); got != copyImageBurst+1 {
		t.Errorf("%d requests reached the server, want %d", got, copyImageBurst+1)
	}
}

func TestPacer_WaitEndsWhenTheContextIsCancelled(t *testing.T) {
	clock := newFakeClock()
	clients, n := drainedCopyImage(t, clock)

	ctx, cancel := context.WithCancel(context.Background())
	done := startCopyImage(clients, ctx)
	awaitWait(t, clock, done)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := n.Load(); got != copyImageBurst {
		t.Errorf("%d requests reached the server, want %d (the cancelled call is never sent)", got, copyImageBurst)
	}
	// The cancelled call gave its token back.
	if left := copyImageTokens(clients, clock); left != 0 {
		t.Errorf("%g CopyImage tokens after the cancelled wait, want 0", left)
	}
}

// deadlineOnly has a deadline that never passes by itself: what the pacer
// decides from it cannot depend on how long the test takes to get there.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

func TestPacer_WaitBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	clock := newFakeClock()
	clients, n := drainedCopyImage(t, clock)

	// The next token is a second away, beyond the deadline: waiting for it
	// would end at the deadline without a token. The pacer fails without
	// waiting.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends a wait, should the pacer start one
	done := startCopyImage(clients, deadlineOnly{ctx, clock.Now().Add(900 * time.Millisecond)})
	var err error
	select {
	case err = <-done:
	case wake := <-clock.waits:
		t.Fatalf("the pacer waits until %s for a token the deadline leaves no time for", wake)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	var pe *paceError
	if !errors.As(err, &pe) {
		t.Errorf("err = %v, want the pacer's", err)
	}
	if got := n.Load(); got != copyImageBurst {
		t.Errorf("%d requests reached the server, want %d", got, copyImageBurst)
	}
	if left := copyImageTokens(clients, clock); left != 0 {
		t.Errorf("%g CopyImage tokens after the refused call, want 0 (its token given back)", left)
	}
	// A Lambda that runs out of time this way is retried by the state machine.
	var re RetryableError
	if !errors.As(Classify(err), &re) {
		t.Errorf("Classify(%v) = %T, want RetryableError", err, Classify(err))
	}
}

func TestPacer_RetriesOfAThrottledCallArePaced(t *testing.T) {
	srv, n := copyImageServer(t, true)
	clock := newFakeClock()
	clients := NewClients(testConfig(srv.URL), WithBackoff(noDelay{}), withPaceClock(clock))
	if _, err := clients.EC2("").CopyImage(context.Background(), copyInput); !IsThrottled(err) {
		t.Fatalf("err = %v, want throttled", err)
	}
	if got := n.Load(); got != MaxAttempts {
		t.Fatalf("%d attempts, want %d", got, MaxAttempts)
	}
	// Every attempt took a token: the pacer runs inside the retry loop.
	if left, want := copyImageTokens(clients, clock), float64(copyImageBurst-MaxAttempts); left != want {
		t.Errorf("%g CopyImage tokens left after %d attempts, want %g", left, MaxAttempts, want)
	}
}

func TestPacer_BucketsArePerRegionAndAction(t *testing.T) {
	p := newPacer(1, nil)
	tests := []struct {
		region, action string
		burst          int
		refill         float64
	}{
		// Bursts are EC2's capacity less one second's refill.
		{"us-east-1", "CreateImage", 45, 5},
		{"us-east-1", "EnableImageDeprecation", 45, 5},
		{"us-east-1", "CopyImage", 99, 1},
		{"eu-west-1", "CopyImage", 99, 1},
		{"us-east-1", "DeregisterImage", 95, 5},
		{"us-east-1", "CreateTags", 90, 10},
		{"us-east-1", "DescribeImages", 80, 20},
		{"us-east-1", "DescribeSnapshots", 40, 10}, // the smaller unfiltered bucket, always
	}
	seen := map[any]bool{}
	for _, tt := range tests {
		l := p.limiter(tt.region, tt.action)
		if l.Burst() != tt.burst || float64(l.Limit()) != tt.refill {
			t.Errorf("%s %s: burst %d refill %g, want %d, %g", tt.region, tt.action, l.Burst(), float64(l.Limit()), tt.burst, tt.refill)
		}
		if seen[l] {
			t.Errorf("%s %s shares a bucket with another action or region", tt.region, tt.action)
		}
		seen[l] = true
	}
	if scaled := newPacer(20, nil).limiter("us-east-1", "CopyImage"); scaled.Burst() != 99 || float64(scaled.Limit()) != 20 {
		t.Errorf("scale 20: burst %d refill %g, want 99, 20", scaled.Burst(), float64(scaled.Limit()))
	}
}

func TestClients_WithoutPacingHasNoPacer(t *testing.T) {
	if NewClients(testConfig("http://127.0.0.1:1"), WithoutPacing()).pace != nil {
		t.Error("WithoutPacing left a pacer")
	}
	if NewClients(testConfig("http://127.0.0.1:1")).pace == nil {
		t.Error("pacing is off by default")
	}
}
