package ec2x

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// Retry configuration shared by every client.
//
// EC2 throttles per account, region and action (token buckets: CopyImage
// refills at 1/s, CreateImage at 5/s, Describe* at 20/s), and during a storm
// any call may answer 503 RequestLimitExceeded. The SDK's standard retryer
// retries it with a 1 s throttle base delay (jittered, doubling, capped at
// MaxBackoff), so what decides whether a batch survives is MaxAttempts and the
// retry quota:
//
//   - MaxAttempts: when a third of the calls is throttled independently, a call
//     fails only if all its attempts are throttled: (1/3)^3 ≈ 3.7 % with the
//     default 3 attempts, so a batch of 100 CreateImage calls would almost
//     surely lose some. With 10 attempts it is (1/3)^10 ≈ 1.7e-5 per call
//     (≈ 0.7 % for a whole 400-call invocation, which the state machine then
//     retries). The worst-case wait of one call stays under a minute
//     (Σ jittered min(2^i s, 20 s) averages ≈ 55 s), well inside a Lambda's
//     timeout.
//   - Retry quota: each throttle retry takes 5 tokens, a successful retry
//     refunds its cost and a first-attempt success adds 1. At a 1/3 throttle
//     rate the expected drain is about 0.17 token per call, but bursts drain it
//     fast: the default 500 tokens is 100 back-to-back throttles, which one
//     burst against CopyImage's 1/s bucket can exceed, after which every call
//     fails at once with "retry quota exceeded". RetryQuota = 5000 allows a
//     thousand throttled retries per client (one client per region) before the
//     quota stops retrying, keeping its purpose of cutting off a real outage.
const (
	MaxAttempts = 10
	MaxBackoff  = 20 * time.Second
	RetryQuota  = 5000
)

// Option adjusts the clients NewClients builds.
type Option func(*clientOptions)

type clientOptions struct {
	backoff         retry.BackoffDelayer
	paceScale       float64
	paceClock       paceClock
	noPacing        bool
	localIdentities bool
}

func newClientOptions(opts []Option) clientOptions {
	var co clientOptions
	for _, o := range opts {
		o(&co)
	}
	return co
}

// WithBackoff replaces the retryer's backoff delays (tests use a fast one so a
// throttling storm runs in milliseconds; attempts and quota stay the same).
func WithBackoff(b retry.BackoffDelayer) Option {
	return func(o *clientOptions) { o.backoff = b }
}

// WithLocalIdentities makes As give each step its own local identity, as
// each deployed function has its own role: its clients sign with
// LocalAccessKey(step), which the local EC2 maps to that step's role in the
// synthesized template. For the local world only: AWS knows no such keys.
func WithLocalIdentities() Option {
	return func(o *clientOptions) { o.localIdentities = true }
}

// RoleStepTag tags each function's role with the step it runs, so that the
// local EC2 finds the role of a step in the synthesized template.
const RoleStepTag = "amirotate:step"

// localKeyPrefix starts every local access key.
const localKeyPrefix = "amirotate-"

// LocalAccessKey is the access key id step signs with in the local world.
func LocalAccessKey(step string) string { return localKeyPrefix + step }

// StepOfLocalAccessKey is the step a local access key names.
func StepOfLocalAccessKey(key string) (string, bool) {
	step, ok := strings.CutPrefix(key, localKeyPrefix)
	return step, ok && step != ""
}

// NewRetryer returns the standard retryer with amirotate's attempts and quota.
// Each call makes a new retryer (and quota): one per client, as the SDK does.
func NewRetryer(opts ...Option) aws.Retryer {
	co := newClientOptions(opts)
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = MaxAttempts
		so.MaxBackoff = MaxBackoff
		so.RateLimiter = ratelimit.NewTokenRateLimit(RetryQuota)
		if co.backoff != nil {
			so.Backoff = co.backoff
		}
	})
}

// Clients hands out one client per service and region, made on first use
// from the configuration loaded once at cold start. Endpoints come from that
// configuration (AWS_ENDPOINT_URL_EC2 / _SSM / _AUTO_SCALING), so the same
// code talks to AWS or to the simulator. EC2 calls are paced by EC2's
// buckets unless WithoutPacing (see pace.go). Safe for concurrent use.
type Clients struct {
	cfg             aws.Config
	opts            []Option
	pace            *pacer // nil: not paced
	localIdentities bool

	mu  sync.Mutex
	ec2 map[string]*ec2.Client
	ssm map[string]*ssm.Client
	asg map[string]*autoscaling.Client
	kms map[string]*kms.Client
}

// NewClients returns the factory for cfg; cfg.Region is the home region.
func NewClients(cfg aws.Config, opts ...Option) *Clients {
	c := &Clients{
		cfg:  markCredentials(cfg),
		opts: opts,
		ec2:  map[string]*ec2.Client{},
		ssm:  map[string]*ssm.Client{},
		asg:  map[string]*autoscaling.Client{},
		kms:  map[string]*kms.Client{},
	}
	co := newClientOptions(opts)
	if !co.noPacing {
		c.pace = newPacer(co.paceScale, co.paceClock)
	}
	c.localIdentities = co.localIdentities
	return c
}

// As returns the clients step's handler uses: with WithLocalIdentities, a
// factory signing as LocalAccessKey(step) that shares c's pacing (EC2
// throttles per account, not per role); otherwise c itself.
func (c *Clients) As(step string) *Clients {
	if !c.localIdentities {
		return c
	}
	cfg := c.cfg.Copy()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(LocalAccessKey(step), "local", "")
	return &Clients{
		cfg: cfg, opts: c.opts, pace: c.pace,
		ec2: map[string]*ec2.Client{}, ssm: map[string]*ssm.Client{}, asg: map[string]*autoscaling.Client{}, kms: map[string]*kms.Client{},
	}
}

// Home is the region the source images are made in (the configuration's).
func (c *Clients) Home() string { return c.cfg.Region }

// Config returns a copy of the configuration the clients are built from.
func (c *Clients) Config() aws.Config { return c.cfg.Copy() }

// EC2 returns the EC2 client of region ("" = home).
func (c *Clients) EC2(region string) *ec2.Client {
	return cached(c, c.ec2, region, func(region string) *ec2.Client {
		return ec2.NewFromConfig(c.cfg, func(o *ec2.Options) {
			o.Region = region
			o.Retryer = NewRetryer(c.opts...)
			if c.pace != nil {
				// Clipped: appending must not write into cfg's shared slice.
				o.APIOptions = append(slices.Clip(o.APIOptions), c.pace.addTo)
			}
		})
	})
}

// SSM returns the Systems Manager client of region ("" = home).
func (c *Clients) SSM(region string) *ssm.Client {
	return cached(c, c.ssm, region, func(region string) *ssm.Client {
		return ssm.NewFromConfig(c.cfg, func(o *ssm.Options) {
			o.Region = region
			o.Retryer = NewRetryer(c.opts...)
		})
	})
}

// AutoScaling returns the Auto Scaling client of region ("" = home).
func (c *Clients) AutoScaling(region string) *autoscaling.Client {
	return cached(c, c.asg, region, func(region string) *autoscaling.Client {
		return autoscaling.NewFromConfig(c.cfg, func(o *autoscaling.Options) {
			o.Region = region
			o.Retryer = NewRetryer(c.opts...)
		})
	})
}

// cached returns the client of region ("" = home) from cache, made with
// newClient on first use.
func cached[T any](c *Clients, cache map[string]T, region string, newClient func(region string) T) T {
	if region == "" {
		region = c.cfg.Region
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := cache[region]; ok {
		return cl
	}
	cl := newClient(region)
	cache[region] = cl
	return cl
}

// KMS returns the KMS client of region ("" = home).
func (c *Clients) KMS(region string) *kms.Client {
	return cached(c, c.kms, region, func(region string) *kms.Client {
		return kms.NewFromConfig(c.cfg, func(o *kms.Options) {
			o.Region = region
			o.Retryer = NewRetryer(c.opts...)
		})
	})
}
