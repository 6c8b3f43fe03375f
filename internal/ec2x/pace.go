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

// withPaceClock runs the pacer on clock instead of the wall clock, so tests
// decide when a wait ends instead of waiting it out.
func withPaceClock(clock paceClock) Option {
	return func(o *clientOptions) { o.paceClock = clock }
}

// paceClock is the pacer's time. The limiters are asked at the clock's Now
// (rate.Limiter's ReserveN takes the time explicitly), and the waits end by
// the same clock, so a fake one drives the pacer completely.
type paceClock interface {
	Now() time.Time
	// SleepUntil returns when the clock reaches t, or with the cause of
	// ctx's end if that comes first.
	SleepUntil(ctx context.Context, t time.Time) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) SleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// pacer holds one limiter per region and bucket. Safe for concurrent use.
type pacer struct {
	scale float64
	clock paceClock

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // region + " " + bucket key
}

// newPacer returns a pacer refilling scale times faster than EC2 (scale ≤ 0
// means 1) on clock (nil means the wall clock).
func newPacer(scale float64, clock paceClock) *pacer {
	if scale <= 0 {
		scale = 1
	}
	if clock == nil {
		clock = wallClock{}
	}
	return &pacer{scale: scale, clock: clock, limiters: map[string]*rate.Limiter{}}
}

// limiter returns the bucket of action in region, full when first used
// (as EC2's is when idle), one second's refill smaller than EC2's.
func (p *pacer) limiter(region, action string) *rate.Limiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limiterLocked(region, action)
}

func (p *pacer) limiterLocked(region, action string) *rate.Limiter {
	key, b := ec2limits.Request(action, true)
	key = region + " " + key
	l, ok := p.limiters[key]
	if !ok {
		l = rate.NewLimiter(rate.Limit(b.Refill*p.scale), max(1, int(b.Capacity-b.Refill)))
		p.limiters[key] = l
	}
	return l
}

// reserve takes a token of action in region at the clock's now. Reading the
// clock under the pacer's lock hands out reservations in time order: a
// limiter asked about a time before its last reservation counts no refill
// for the difference, which would make the pacer wait longer than EC2
// needs.
func (p *pacer) reserve(region, action string) (r *rate.Reservation, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now = p.clock.Now()
	return p.limiterLocked(region, action).ReserveN(now, 1), now
}

// wait blocks until action may be sent in region. It gives up at once when
// the wait would outlast ctx's deadline (the error wraps
// context.DeadlineExceeded, which Classify calls retryable), and when ctx
// ends during the wait. A wait given up returns its token.
func (p *pacer) wait(ctx context.Context, region, action string) error {
	r, now := p.reserve(region, action)
	// The bucket holds at least one token, so every reservation is OK.
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < d {
		r.CancelAt(now)
		return &paceError{fmt.Errorf("pacing %s in %s: a %s wait would outlast the deadline: %w", action, region, d.Round(time.Millisecond), context.DeadlineExceeded)}
	}
	if err := p.clock.SleepUntil(ctx, now.Add(d)); err != nil {
		r.CancelAt(p.clock.Now())
		return &paceError{fmt.Errorf("pacing %s in %s: %w", action, region, err)}
	}
	return nil
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
