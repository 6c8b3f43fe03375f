package ec2x

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/amirotate/amirotate/internal/ec2sim"
)

// paceScale runs the simulator's clock, and so its buckets' refill, this
// many times faster than real time; the pacer is told the same, as the
// benchmark does.
const paceScale = 20

type scaledClock struct {
	start time.Time
	scale float64
}

func (c scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.start)) * c.scale)).UTC()
}

// burstCreateImage sends n CreateImage calls as the snapshot step does for
// a batch (Workers calls in flight) to a simulator with EC2's throttling on, and returns
// the simulator's count of throttled answers and the calls that failed.
func burstCreateImage(t *testing.T, n int, opts ...Option) (throttled, failed int) {
	t.Helper()
	sim := ec2sim.New(ec2sim.Options{
		Regions: []string{"us-east-1"},
		Clock:   scaledClock{start: time.Now(), scale: paceScale},
	})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	inst, err := sim.RunInstance("us-east-1", ec2sim.InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	sim.SetThrottling(true)
	// A short backoff keeps the unpaced run quick; the paced run must not
	// need it at all.
	backoff := retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 5 * time.Millisecond, nil })
	client := NewClients(ec2sim.AWSConfig(srv.URL, "us-east-1"), append(opts, WithBackoff(backoff))...).EC2("")

	var mu sync.Mutex
	ForEach(context.Background(), n, Workers, func(i int) {
		_, err := client.CreateImage(context.Background(), &ec2.CreateImageInput{
			InstanceId: aws.String(inst), Name: aws.String(fmt.Sprintf("burst-%03d", i)), NoReboot: aws.Bool(true),
		})
		if err != nil {
			mu.Lock()
			failed++
			mu.Unlock()
		}
	})
	return sim.Stats().Throttled, failed
}

func TestPacer_BurstAboveTheBucketIsNeverThrottled(t *testing.T) {
	// 120 calls against CreateImage's 50-token bucket refilling 5/s: the
	// pacer's 45-token burst leaves 75 calls waiting for refills (0.75 s at 20×).
	const n = 120
	start := time.Now()
	throttled, failed := burstCreateImage(t, n, WithPaceScale(paceScale))
	if throttled != 0 || failed != 0 {
		t.Errorf("paced burst of %d: %d answers RequestLimitExceeded, %d calls failed; want none", n, throttled, failed)
	}
	// The pacer really waited for refills: 75 tokens at 100/s.
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("paced burst took %s, want at least 0.7 s of refill waits", d)
	}
}

func TestPacer_WithoutPacingTheSameBurstIsThrottled(t *testing.T) {
	throttled, _ := burstCreateImage(t, 120, WithoutPacing())
	if throttled == 0 {
		t.Fatal("an unpaced burst of 120 CreateImage calls was never throttled; the paced test proves nothing")
	}
	t.Logf("unpaced: %d answers RequestLimitExceeded", throttled)
}

// copyImageServer accepts every CopyImage, or throttles every call, and
// counts the requests.
func copyImageServer(t *testing.T, throttle bool) (*httptest.Server, *int) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
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

// drainCopyImage spends the pacer's CopyImage burst (EC2's 100 tokens less
// one second's refill) so the next call waits a second for a refill.
func drainCopyImage(t *testing.T, client *ec2.Client) {
	t.Helper()
	for i := range 99 {
		if _, err := client.CopyImage(context.Background(), copyInput); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
}

func TestPacer_WaitEndsWhenTheContextIsCancelled(t *testing.T) {
	srv, n := copyImageServer(t, false)
	client := NewClients(testConfig(srv.URL)).EC2("")
	drainCopyImage(t, client)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := client.CopyImage(ctx, copyInput)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The next token is a second away: returning well before it means the
	// wait ended with the context (generous for a loaded machine).
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("cancelled wait returned after %s, want about 50 ms", d)
	}
	if *n != 99 {
		t.Errorf("%d requests reached the server, want 99 (the cancelled call is never sent)", *n)
	}
}

func TestPacer_WaitBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	srv, _ := copyImageServer(t, false)
	client := NewClients(testConfig(srv.URL)).EC2("")
	drainCopyImage(t, client)

	// The next token is a second away, beyond the deadline: waiting for it
	// would end at the deadline; failing at once ends well before it.
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.CopyImage(ctx, copyInput)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 600*time.Millisecond {
		t.Errorf("a wait that cannot fit the deadline returned after %s, want at once", d)
	}
	// A Lambda that runs out of time this way is retried by the state machine.
	var re RetryableError
	if !errors.As(Classify(err), &re) {
		t.Errorf("Classify(%v) = %T, want RetryableError", err, Classify(err))
	}
}

func TestPacer_RetriesOfAThrottledCallArePaced(t *testing.T) {
	srv, n := copyImageServer(t, true)
	clients := NewClients(testConfig(srv.URL), WithBackoff(noDelay{}))
	if _, err := clients.EC2("").CopyImage(context.Background(), copyInput); !IsThrottled(err) {
		t.Fatalf("err = %v, want throttled", err)
	}
	if *n != MaxAttempts {
		t.Fatalf("%d attempts, want %d", *n, MaxAttempts)
	}
	// Every attempt took a token: the pacer runs inside the retry loop.
	left := clients.pace.limiter("us-east-1", "CopyImage").Tokens()
	if want := float64(99 - MaxAttempts); left < want-0.5 || left > want+0.5 {
		t.Errorf("%.1f CopyImage tokens left after %d attempts, want %g", left, MaxAttempts, want)
	}
}

func TestPacer_BucketsArePerRegionAndAction(t *testing.T) {
	p := newPacer(1)
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
	if scaled := newPacer(20).limiter("us-east-1", "CopyImage"); scaled.Burst() != 99 || float64(scaled.Limit()) != 20 {
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
