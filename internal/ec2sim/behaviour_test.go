package ec2sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// fastRetries is the SDK's standard retryer with a short backoff cap, so
// tests don't sleep for the 1 s throttle base delay.
func fastRetries(attempts int) func(*ec2.Options) {
	return func(o *ec2.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = 5 * time.Millisecond
		})
	}
}

func TestRetryer_RecoversFromInjectedThrottling(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	if err := e.sim.Inject(Fault{Action: "DescribeImages", Region: "us-east-1", Code: "RequestLimitExceeded", Count: 2}); err != nil {
		t.Fatal(err)
	}
	out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}}, fastRetries(3))
	if err != nil || len(out.Images) != 2 {
		t.Fatalf("after retries: %v %v", out, err)
	}
	st := e.sim.Stats()
	if st.Calls["us-east-1"]["DescribeImages"] != 3 || st.Faulted != 2 || st.Retried["us-east-1"]["DescribeImages"] != 2 {
		t.Fatalf("stats = %+v, want 3 calls of which 2 faulted and 2 retries", st)
	}
	// More faults than attempts: the SDK gives up with the EC2 code and 503.
	if err := e.sim.Inject(Fault{Action: "DescribeImages", Code: "RequestLimitExceeded", Count: 5}); err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, fastRetries(3))
	wantCode(t, err, "RequestLimitExceeded", 503)
	// Server errors are retried too; a latency-only rule just slows calls down.
	e.sim.ClearFaults()
	if err := e.sim.Inject(Fault{Action: "DescribeRegions", Code: "InternalError", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Inject(Fault{Action: "DescribeRegions", Latency: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.ec2.DescribeRegions(ctx, &ec2.DescribeRegionsInput{}, fastRetries(3)); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("latency not applied")
	}
}

func TestThrottling_BucketsEmptyAndRefillFromSimClock(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := context.Background()
	e.sim.SetThrottling(true)
	noRetry := func(o *ec2.Options) { o.Retryer = aws.NopRetryer{} }
	// Non-mutating bucket: 100 tokens, 20/s.
	for i := 0; i < 100; i++ {
		if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}, noRetry); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}, noRetry)
	wantCode(t, err, "RequestLimitExceeded", 503)
	// Buckets are per action and per region.
	if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}, noRetry); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, noRetry, inRegion("eu-west-1")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	for i := 0; i < 20; i++ {
		if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, noRetry); err != nil {
			t.Fatalf("after refill, call %d: %v", i, err)
		}
	}
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, noRetry)
	wantCode(t, err, "RequestLimitExceeded", 503)
	// RunInstances: 5 requests, 2/s.
	for i := 0; i < 5; i++ {
		if _, err := e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(BaseImageID("us-east-1")), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}, noRetry); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(BaseImageID("us-east-1")), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}, noRetry)
	wantCode(t, err, "RequestLimitExceeded", 503)
	if st := e.sim.Stats(); st.Throttled != 3 {
		t.Fatalf("throttled = %d, want 3", st.Throttled)
	}
	// The standard retryer rides out throttling once the clock moves on.
	e.sim.SetThrottling(false)
	if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, noRetry); err != nil {
		t.Fatalf("throttling off: %v", err)
	}
}

func TestThrottling_StandardRetryerRidesOutBursts(t *testing.T) {
	// The simulator's clock moves only when a retry backs off, so the burst
	// outruns the bucket however slow the machine is.
	clock := NewManualClock(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	e := newEnv(t, Options{Clock: clock, ImageDelay: -1})
	e.sim.SetThrottling(true)
	ctx := context.Background()
	inst := e.runInstance(t, "us-east-1", nil)
	img := e.createImage(t, "us-east-1", inst, "burst-image")
	// 106 CreateTags against a 100-token bucket refilling 10/s: a retryer
	// with enough attempts gets every call through.
	backoff := retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) {
		clock.Advance(100 * time.Millisecond)
		return 0, nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 106)
	for i := 0; i < 106; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{img}, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String(fmt.Sprint(i))}}},
				func(o *ec2.Options) {
					o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
						so.MaxAttempts = 100
						so.Backoff = backoff
						so.RateLimiter = noRateLimit{}
					})
				})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := e.sim.Stats(); st.Throttled == 0 {
		t.Fatalf("expected some throttling, stats %+v", st)
	}
}

type noRateLimit struct{}

func (noRateLimit) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (noRateLimit) AddTokens(uint) error { return nil }

func TestProtocol_RawQueryAndErrors(t *testing.T) {
	e := newEnv(t, Options{})
	post := func(form url.Values, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	auth := "AWS4-HMAC-SHA256 Credential=AKID/20261125/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=00"
	st, body := post(url.Values{"Action": {"FlyToTheMoon"}, "Version": {"2016-11-15"}}, auth)
	if st != 400 || !strings.Contains(body, "<Code>InvalidAction</Code>") || !strings.Contains(body, "<RequestID>") {
		t.Fatalf("unknown action: %d %s", st, body)
	}
	st, body = post(url.Values{"Action": {"DescribeImages"}, "Version": {"2016-11-15"}, "Owner.1": {"amazon"}}, auth)
	if st != 200 || !strings.Contains(body, "<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>") || !strings.Contains(body, BaseImageID("eu-west-1")) {
		t.Fatalf("describe: %d %s", st, body)
	}
	// GET works too, and without a credential scope the first region answers.
	resp, err := http.Get(e.srv.URL + "/?Action=DescribeRegions&Version=2016-11-15")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(b), "<regionName>") != 3 {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	st, body = post(url.Values{"Action": {"DescribeImages"}}, "AWS4-HMAC-SHA256 Credential=AKID/20261125/mars-1/ec2/aws4_request, SignedHeaders=host, Signature=00")
	if st != 400 || !strings.Contains(body, "InvalidRegion") {
		t.Fatalf("unknown region: %d %s", st, body)
	}
	st, body = post(url.Values{"Action": {"DescribeImages"}, "NextToken": {"garbage"}}, auth)
	if st != 400 || !strings.Contains(body, "InvalidPaginationToken") {
		t.Fatalf("bad token: %d %s", st, body)
	}
}

func TestAdmin_StatsFaultsThrottlingReset(t *testing.T) {
	e := newEnv(t, Options{})
	do := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	ctx := context.Background()
	if st, m := do("POST", "/_sim/faults", `{"action":"DescribeImages","region":"us-east-1","code":"InternalError","count":1,"latency":"1ms"}`); st != 200 || m["added"] != 1.0 {
		t.Fatalf("faults: %d %v", st, m)
	}
	_, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{}, func(o *ec2.Options) { o.Retryer = aws.NopRetryer{} })
	wantCode(t, err, "InternalError", 500)
	if st, _ := do("POST", "/_sim/faults", `[{"action":"CopyImage","code":"X","probability":2}]`); st != 400 {
		t.Fatalf("bad rule accepted: %d", st)
	}
	if st, m := do("POST", "/_sim/throttling", `{"enabled":true}`); st != 200 || m["enabled"] != true || !e.sim.Throttling() {
		t.Fatalf("throttling: %d %v", st, m)
	}
	if st, _ := do("POST", "/_sim/throttling", `off`); st != 200 || e.sim.Throttling() {
		t.Fatal("throttling off failed")
	}
	st, m := do("GET", "/_sim/stats", "")
	calls, _ := m["calls"].(map[string]any)
	region, _ := calls["us-east-1"].(map[string]any)
	if st != 200 || region["DescribeImages"] != 1.0 || m["throttled"] != 0.0 {
		t.Fatalf("stats: %d %v", st, m)
	}
	if _, err := e.sim.RunInstance("us-east-1", InstanceSpec{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := do("POST", "/_sim/reset", ""); st != 200 {
		t.Fatal("reset")
	}
	out, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil || len(out.Reservations) != 0 {
		t.Fatalf("after reset: %+v %v", out, err)
	}
	if st, m := do("POST", "/_sim/clock", `{"advance":"90s"}`); st != 200 || !strings.HasPrefix(m["now"].(string), "2026-11-25T03:01:30") {
		t.Fatalf("clock: %d %v", st, m)
	}
	if st, _ := do("GET", "/_sim/nothing", ""); st != 404 {
		t.Fatal("unknown admin path")
	}
}

func TestConcurrentUse_IsRaceFree(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			region := e.sim.Regions()[w%3]
			inst, err := e.sim.RunInstance(region, InstanceSpec{Tags: map[string]string{"w": fmt.Sprint(w)}})
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 5; i++ {
				if _, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String(fmt.Sprintf("w%d-%d", w, i))}, inRegion(region)); err != nil {
					t.Error(err)
				}
				e.clock.Advance(10 * time.Second)
				if _, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{{Name: aws.String("state"), Values: []string{"available"}}}}, inRegion(region)); err != nil {
					t.Error(err)
				}
				_ = e.sim.Stats()
			}
		}(w)
	}
	wg.Wait()
}

// serveWithin serves one request directly and fails the test if the
// simulator does not answer within a few seconds (a lock left held).
func serveWithin(t *testing.T, sim *Sim, req *http.Request) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sim.ServeHTTP(rec, req)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer to %s %s within 5s", req.Method, req.URL)
	}
	return rec.Code, rec.Body.String()
}

func TestServeHTTP_PanicInActionAnswersInternalErrorAndReleasesTheLock(t *testing.T) {
	ec2Actions["PanicForTest"] = func(*Sim, *call) *apiError { panic("boom") }
	t.Cleanup(func() { delete(ec2Actions, "PanicForTest") })
	sim := New(Options{Regions: []string{"us-east-1"}, Seed: 1})
	form := func(action string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("Action="+action+"&Version=2016-11-15"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	}
	if st, body := serveWithin(t, sim, form("PanicForTest")); st != 500 || !strings.Contains(body, "<Code>InternalError</Code>") {
		t.Fatalf("panicking action: %d %s", st, body)
	}
	if st, body := serveWithin(t, sim, form("DescribeRegions")); st != 200 {
		t.Fatalf("call after a panic: %d %s", st, body)
	}
}

func TestSSM_GetParametersByPathWithTokenPastTheEnd(t *testing.T) {
	sim := New(Options{Regions: []string{"us-east-1"}, Seed: 1})
	if err := sim.PutParameter("us-east-1", "/a/b", "x", "text"); err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{2, math.MaxInt64, math.MaxUint64} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"Path":"/a","NextToken":"`+encodeToken("ssm", after)+`"}`))
		req.Header.Set("X-Amz-Target", "AmazonSSM.GetParametersByPath")
		st, body := serveWithin(t, sim, req)
		if st != 200 || body != `{"Parameters":[]}` {
			t.Fatalf("token after %d: %d %s", after, st, body)
		}
	}
}

func TestDescribeAvailabilityZones_ShortRegionName(t *testing.T) {
	sim := New(Options{Regions: []string{"x"}, Seed: 1})
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("Action=DescribeAvailabilityZones"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if st, body := serveWithin(t, sim, req); st != 200 || !strings.Contains(body, "<zoneName>xa</zoneName>") {
		t.Fatalf("zones of region x: %d %s", st, body)
	}
}
