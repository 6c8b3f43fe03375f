package ec2x

import (
	"context"
	"fmt"
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"

	"github.com/amirotate/amirotate/internal/ec2limits"
)

// Client-side pacing of EC2 calls.
//
// EC2 answers RequestLimitExceeded once an action's token bucket is empty
// (ec2limits holds the documented sizes). The retryer absorbs that, but
// every throttled attempt is a wasted call plus a second or more of backoff,
// and the handlers send bursts far above some refill rates (a batch's
// CreateImage calls against 5/s, its copies against CopyImage's 1/s). So the
// EC2 clients wait, before sending, on a token bucket refilling like EC2's
// for that region and action: a process never sends an action faster than
// EC2 refills it. Pacing is on unless WithoutPacing. The buckets belong to the Clients, i.e. to one
// process (one Lambda container); several containers rotating in the same
// account and region at once can still exceed a bucket together, and then
// the retryer absorbs the throttling as before.
//
// The client's bucket holds one second's refill less than EC2's: the client
// counts a token when it sends, EC2 when the request arrives, and a request
// that overtakes an earlier one on the way (the first of a burst waits for
// a connection) would otherwise find EC2's bucket a fraction of a token
// short. One second of refill tolerates that much disorder (1/scale s of
// real time under WithPaceScale) at the cost of finishing a long burst one
// second later.
//
// The pacer sits in the Finalize step after the Retry middleware, so every
// attempt, retries of a throttled call included, waits for a token, and
// before signing, so a long wait never sends a stale signature.
//
// Only request buckets are paced; the resource buckets counted in instances
// (RunInstances and friends) are never called by a rotation. The actions
// whose unfiltered calls have a smaller bucket are paced by that smaller
// one whatever the call's filters: they are a few calls per rotation
// (discovery, snapshot listings) and that is never faster than EC2 allows.

// paceMiddlewareID names the pacer in the SDK's middleware stack.
const paceMiddlewareID = "amirotate.Pace"

// WithPaceScale multiplies the pacer's refill rates by s (bucket sizes stay
// the same): the benchmark's simulator runs s times faster than real time.
// s ≤ 0 is ignored.
func WithPaceScale(s float64) Option {
	return func(o *clientOptions) {
		if s > 0 {
			o.paceScale = s
		}
	}
}

// WithoutPacing turns the pacer off, for tests that provoke EC2 throttling
// and for callers that pace themselves.
func WithoutPacing() Option {
	return func(o *clientOptions) { o.noPacing = true }
}

// pacer holds one limiter per region and bucket. Safe for concurrent use.
type pacer struct {
	scale float64

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // region + " " + bucket key
}

func newPacer(scale float64) *pacer {
	if scale <= 0 {
		scale = 1
	}
	return &pacer{scale: scale, limiters: map[string]*rate.Limiter{}}
}

// limiter returns the bucket of action in region, full when first used
// (as EC2's is when idle), one second's refill smaller than EC2's.
func (p *pacer) limiter(region, action string) *rate.Limiter {
	key, b := ec2limits.Request(action, true)
	key = region + " " + key
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.limiters[key]
	if !ok {
		l = rate.NewLimiter(rate.Limit(b.Refill*p.scale), max(1, int(b.Capacity-b.Refill)))
		p.limiters[key] = l
	}
	return l
}

// wait blocks until action may be sent in region. It gives up at once when
// the wait would outlast ctx's deadline (the error wraps
// context.DeadlineExceeded, which Classify calls retryable), and when ctx
// ends during the wait.
func (p *pacer) wait(ctx context.Context, region, action string) error {
	r := p.limiter(region, action).Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.Cancel()
		return &paceError{fmt.Errorf("pacing %s in %s: a %s wait would outlast the deadline: %w", action, region, d.Round(time.Millisecond), context.DeadlineExceeded)}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return &paceError{fmt.Errorf("pacing %s in %s: %w", action, region, context.Cause(ctx))}
	}
}

// paceError ends a wait the context did not allow. The SDK must not retry
// it (it would take DeadlineExceeded for a network timeout and back off
// until the deadline): the context is over, or will be before a token comes.
// Classify still calls it retryable, for the state machine.
type paceError struct{ err error }

func (e *paceError) Error() string        { return e.err.Error() }
func (e *paceError) Unwrap() error        { return e.err }
func (e *paceError) RetryableError() bool { return false }

// addTo puts the pacer into an EC2 client's stack, right after Retry.
func (p *pacer) addTo(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc(paceMiddlewareID,
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := p.wait(ctx, awsmiddleware.GetRegion(ctx), awsmiddleware.GetOperationName(ctx)); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}
