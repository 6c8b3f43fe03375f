package ec2x

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// stormServer throttles a third of all requests (RequestLimitExceeded, 503).
func stormServer(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		throttle := rng.IntN(3) == 0
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		if throttle {
			w.WriteHeader(503)
			fmt.Fprint(w, `<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>`)
			return
		}
		fmt.Fprint(w, `<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><imagesSet/></DescribeImagesResponse>`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func stormFailures(t *testing.T, client *ec2.Client, calls int) int {
	// Sequential, so the seeded storm is the same on every run.
	failed := 0
	for range calls {
		if _, err := client.DescribeImages(context.Background(), &ec2.DescribeImagesInput{}); err != nil {
			failed++
		}
	}
	return failed
}

func TestRetryer_SurvivesAThirdOfCallsThrottled(t *testing.T) {
	srv := stormServer(t)
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	const calls = 300
	// Unpaced: the storm is the server's, and pacing would only slow the
	// test down to DescribeImages' 20 calls a second.
	if failed := stormFailures(t, NewClients(cfg, WithBackoff(noDelay{}), WithoutPacing()).EC2(""), calls); failed != 0 {
		t.Errorf("%d of %d calls failed with amirotate's retryer", failed, calls)
	}
	// The SDK's defaults (3 attempts) lose about 1 call in 27 in the same storm.
	defaults := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.Backoff = noDelay{} })
	})
	if failed := stormFailures(t, defaults, calls); failed == 0 {
		t.Errorf("the default retryer survived the storm too; the test does not show the difference")
	} else {
		t.Logf("default retryer: %d of %d calls failed", failed, calls)
	}
}
