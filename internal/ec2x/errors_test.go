package ec2x

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/amirotate/amirotate/internal/rotation"
)

// noDelay makes retries immediate so tests exercise the real retry loop fast.
type noDelay struct{}

func (noDelay) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// ec2Error answers every request with an EC2 Query-protocol error, the way
// EC2 does, and counts the attempts.
func ec2Error(t *testing.T, status int, code string) (*ec2.Client, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>test message for %s</Message></Error></Errors><RequestID>6192d985-fecc-456e-b2fb-cd72fc19be25</RequestID></Response>`, code, code)
	}))
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	return NewClients(cfg, WithBackoff(noDelay{})).EC2(""), &n
}

func TestClassify_RealSDKErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		code      string
		want      string // "RetryableError" or "FatalError"
		notFound  bool
		throttled bool
		server    bool
		attempts  int32
	}{
		{"throttled after all attempts", 503, "RequestLimitExceeded", "RetryableError", false, true, true, MaxAttempts},
		{"internal error", 500, "InternalError", "RetryableError", false, false, true, MaxAttempts},
		{"unavailable", 503, "Unavailable", "RetryableError", false, false, true, MaxAttempts},
		{"image not found (eventual consistency)", 400, "InvalidAMIID.NotFound", "RetryableError", true, false, false, 1},
		{"snapshot not found", 400, "InvalidSnapshot.NotFound", "RetryableError", true, false, false, 1},
		{"deregistered image", 400, "InvalidAMIID.Unavailable", "RetryableError", true, false, false, 1},
		{"unauthorized", 403, "UnauthorizedOperation", "FatalError", false, false, false, 1},
		{"auth failure", 401, "AuthFailure", "FatalError", false, false, false, 1},
		{"malformed id", 400, "InvalidAMIID.Malformed", "FatalError", false, false, false, 1},
		{"copy limit", 400, "ResourceLimitExceeded", "RetryableError", false, false, false, 1},
		{"tag race", 400, "ConcurrentTagAccess", "RetryableError", false, false, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, n := ec2Error(t, tt.status, tt.code)
			_, err := cl.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{"ami-0123456789abcdef0"}})
			if err == nil {
				t.Fatal("want an error")
			}
			if got := n.Load(); got != tt.attempts {
				t.Errorf("attempts = %d, want %d", got, tt.attempts)
			}
			wrapped := fmt.Errorf("describing images in us-east-1: %w", err)
			if got := Code(wrapped); got != tt.code {
				t.Errorf("Code = %q, want %q", got, tt.code)
			}
			if got := IsNotFound(wrapped); got != tt.notFound {
				t.Errorf("IsNotFound = %v, want %v", got, tt.notFound)
			}
			if got := IsThrottled(wrapped); got != tt.throttled {
				t.Errorf("IsThrottled = %v, want %v", got, tt.throttled)
			}
			if got := IsServerError(wrapped); got != tt.server {
				t.Errorf("IsServerError = %v, want %v", got, tt.server)
			}
			c := Classify(wrapped)
			switch v := c.(type) {
			case RetryableError:
				if tt.want != "RetryableError" {
					t.Errorf("Classify = RetryableError, want %s", tt.want)
				}
				if v.Code != tt.code || v.Message != wrapped.Error() {
					t.Errorf("RetryableError = %+v", v)
				}
			case FatalError:
				if tt.want != "FatalError" {
					t.Errorf("Classify = FatalError, want %s", tt.want)
				}
				if v.Code != tt.code || v.Message != wrapped.Error() {
					t.Errorf("FatalError = %+v", v)
				}
			default:
				t.Errorf("Classify returned %T", c)
			}
		})
	}
}

func TestClassify_KeepsInvalidInputUntouched(t *testing.T) {
	in := rotation.Invalid("policy.name", "must match [a-z0-9-]{1,32}")
	got := Classify(fmt.Errorf("parsing: %w", in))
	ie, ok := got.(rotation.InvalidInputError)
	if !ok {
		t.Fatalf("Classify = %T, want rotation.InvalidInputError", got)
	}
	if ie.Error() != in.Error() {
		t.Errorf("message changed: %q", ie.Error())
	}
}

func TestClassify_NamedAndPlainErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, "<nil>"},
		{"retryable wrapped", fmt.Errorf("ctx: %w", RetryableError{Message: "x"}), "ec2x.RetryableError"},
		{"fatal wrapped", fmt.Errorf("ctx: %w", FatalError{Message: "x"}), "ec2x.FatalError"},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "ec2x.RetryableError"},
		{"plain bug", errors.New("unexpected"), "ec2x.FatalError"},
		{"generic api error", &smithy.GenericAPIError{Code: "Throttling", Message: "slow down"}, "ec2x.RetryableError"},
		{"generic fatal api error", &smithy.GenericAPIError{Code: "InvalidParameterValue"}, "ec2x.FatalError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprintf("%T", Classify(tt.err)); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}

// A refused connection outlived the SDK's ten attempts: an endpoint that
// refuses that long is misconfigured, and the state machine retrying the
// step for minutes more would only hide that.
func TestClassify_ConnectionRefusedIsFatalAfterTheSDKRetries(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cfg := aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(url),
	}
	_, err := NewClients(cfg, WithBackoff(noDelay{})).EC2("").DescribeImages(context.Background(), &ec2.DescribeImagesInput{})
	if fe, ok := Classify(err).(FatalError); !ok || fe.Code != CodeEndpointRefused {
		t.Errorf("Classify(%v) = %#v, want FatalError %s", err, Classify(err), CodeEndpointRefused)
	}
}

func TestClassify_InvalidRequestIsFatal(t *testing.T) {
	cl, n := ec2Error(t, 500, "InternalError")
	_, err := cl.CreateImage(context.Background(), &ec2.CreateImageInput{}) // no InstanceId, no Name
	if _, ok := Classify(err).(FatalError); !ok || n.Load() != 0 {
		t.Errorf("Classify(%v) = %T after %d requests, want FatalError before any request", err, Classify(err), n.Load())
	}
}

func TestClients_CachedPerRegionAndConcurrencySafe(t *testing.T) {
	c := NewClients(aws.Config{Region: "us-east-1"})
	if c.Home() != "us-east-1" {
		t.Fatalf("Home = %q", c.Home())
	}
	done := make(chan *ec2.Client, 16)
	for range 16 {
		go func() { done <- c.EC2("eu-west-1") }()
	}
	first := <-done
	for range 15 {
		if got := <-done; got != first {
			t.Fatal("EC2(eu-west-1) returned different clients")
		}
	}
	if c.EC2("") != c.EC2("us-east-1") {
		t.Error(`EC2("") is not the home region's client`)
	}
	if c.EC2("eu-west-1").Options().Region != "eu-west-1" {
		t.Error("client has the wrong region")
	}
	if c.SSM("eu-west-1") != c.SSM("eu-west-1") || c.AutoScaling("") != c.AutoScaling("us-east-1") {
		t.Error("SSM/AutoScaling clients not cached")
	}
	if got := c.EC2("ap-southeast-2").Options().Retryer.MaxAttempts(); got != MaxAttempts {
		t.Errorf("MaxAttempts = %d, want %d", got, MaxAttempts)
	}
}

// Configuration problems become a FatalError carrying one sentence, found
// through the real client's error chain.
func TestClassify_ConfigurationProblemsAreFatalSentences(t *testing.T) {
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()
	call := func(cfg aws.Config, endpoint string) error {
		c := NewClients(cfg, WithBackoff(noDelay{}))
		_, err := c.EC2("").DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{}, func(o *ec2.Options) {
			o.BaseEndpoint = aws.String(endpoint)
			o.Retryer = aws.NopRetryer{}
		})
		return err
	}
	static := credentials.NewStaticCredentialsProvider("AKID", "secret", "")
	noCreds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no EC2 IMDS role found")
	})
	expired, _ := ec2Error(t, 400, "RequestExpired")
	_, expiredErr := expired.DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{})
	for name, tc := range map[string]struct {
		err  error
		code string
	}{
		"refused":        {call(aws.Config{Region: "us-east-1", Credentials: static}, refusedURL), CodeEndpointRefused},
		"unknown host":   {call(aws.Config{Region: "us-east-1", Credentials: static}, "http://no-such-host.invalid"), CodeUnknownHost},
		"no credentials": {call(aws.Config{Region: "us-east-1", Credentials: noCreds}, refusedURL), CodeNoCredentials},
		"expired":        {expiredErr, CodeExpiredToken},
	} {
		t.Run(name, func(t *testing.T) {
			got := Classify(fmt.Errorf("listing the instances: %w", tc.err))
			fe, ok := got.(FatalError)
			if !ok || fe.Code != tc.code || strings.Contains(fe.Message, "operation error") {
				t.Errorf("Classify(%v) = %#v, want a FatalError %s with a plain sentence", tc.err, got, tc.code)
			}
		})
	}
	if code, _ := Explain(errors.New("something else")); code != "" {
		t.Errorf("an unrelated error explained as %s", code)
	}
}

func TestMarkedCredentials_StillAnonymousToTheSDK(t *testing.T) {
	cfg := markCredentials(aws.Config{Credentials: aws.AnonymousCredentials{}})
	if !aws.IsCredentialsProvider(cfg.Credentials, aws.AnonymousCredentials{}) {
		t.Error("the wrapper hides anonymous credentials from the SDK")
	}
}
