package steps

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// This file holds the bookkeeping the batch steps share: the input check,
// the counts the state machine's Choice reads, the next wait and the order
// of the records.

// MaxWaitSeconds caps poll's backoff: images and copies take minutes to
// hours, and polling less often than every 5 minutes only delays the batch.
const MaxWaitSeconds = 300

// batchContext is what a handler derives from its input once.
type batchContext struct {
	policy rotation.Policy
	home   string
}

// homeClients is what the input checks need of a step's clients.
type homeClients interface {
	Configured() bool
	Home() string
}

// checkBatch validates a Batch as every batch step (snapshot, poll, copy,
// tag, publish, retention) receives it. The policy was validated by
// discover; it is checked again because a Batch may also come from a
// person (a retried or hand-made input).
func checkBatch(b Batch, clients homeClients, env Env) (batchContext, error) {
	bc, err := checkRotation(b.Policy, b.Rotation, clients, env)
	if err != nil {
		return batchContext{}, err
	}
	if len(b.InstanceIDs) == 0 {
		return batchContext{}, rotation.Invalid("instanceIds", "is empty; a batch rotates at least one instance")
	}
	if len(b.InstanceIDs) > bc.policy.BatchSize {
		return batchContext{}, rotation.Invalid("instanceIds", "has %d instances; the policy's batchSize is %d", len(b.InstanceIDs), bc.policy.BatchSize)
	}
	for i, id := range b.InstanceIDs {
		if !rotation.ValidInstanceID(id) {
			return batchContext{}, rotation.Invalid(fmt.Sprintf("instanceIds[%d]", i), "%q is not an instance id (i- and 8 or 17 hex digits)", id)
		}
	}
	return bc, nil
}

// checkRotation validates what every step after discover receives: the
// policy (with its defaults, and pinned by the deployment), the rotation's
// time (neither in the future nor absurdly old) and id, and the home
// region (the rotation's, else the clients').
func checkRotation(p rotation.Policy, rot rotation.Rotation, clients homeClients, env Env) (batchContext, error) {
	if rot.Time.IsZero() {
		return batchContext{}, rotation.Invalid("rotation.time", "is missing; the discover step sets it, and image ages count from it")
	}
	if rot.ID == "" {
		return batchContext{}, rotation.Invalid("rotation.id", "is missing; the discover step sets it (e.g. 20261125T0300Z)")
	}
	if t, err := rotation.ParseRotationID(rot.ID); err != nil {
		return batchContext{}, rotation.Invalid("rotation.id", "%q is not a rotation id; expected UTC time to the minute like 20261125T0300Z", rot.ID)
	} else if !t.Equal(rot.Time.UTC().Truncate(time.Minute)) {
		return batchContext{}, rotation.Invalid("rotation.id", "%q does not name the rotation time %s", rot.ID, rot.Time.UTC().Format(time.RFC3339))
	}
	if err := rotation.CheckRotationTime(rot.Time, env.now()); err != nil {
		return batchContext{}, err
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return batchContext{}, err
	}
	if err := env.Policies.Check(p); err != nil {
		return batchContext{}, err
	}
	if !clients.Configured() {
		return batchContext{}, fmt.Errorf("handler has no AWS clients")
	}
	home := rot.Home
	if home == "" {
		home = clients.Home()
	}
	if err := p.CheckHome(home); err != nil {
		return batchContext{}, err
	}
	return batchContext{policy: p, home: home}, nil
}

// deadline is when pending images count as timed out.
func deadline(b Batch, p rotation.Policy) time.Time {
	start := b.Rotation.StartedAt
	if start.IsZero() {
		start = b.Rotation.Time
	}
	return start.Add(time.Duration(p.TimeoutMinutes) * time.Minute)
}

// copySource reports whether r is a source image ready to be copied (in a
// dry run: one that would be).
func copySource(r rotation.Record, p rotation.Policy) bool {
	return r.SourceImageID == "" && (r.State == rotation.StateAvailable || (p.DryRun && r.State == rotation.StatePlanned))
}

// copyKey identifies the copy of an instance's image in a region.
type copyKey struct{ instance, region string }

// copyIndex maps each copy record to its position in b.Images.
func copyIndex(images []rotation.Record) map[copyKey]int {
	idx := map[copyKey]int{}
	for i, r := range images {
		if r.SourceImageID != "" {
			idx[copyKey{r.InstanceID, r.Region}] = i
		}
	}
	return idx
}

// recount sets Counts, Pending and ToCopy from the records and sorts them.
func recount(b *Batch, p rotation.Policy) {
	b.Counts = map[string]int{}
	b.Pending = 0
	for _, r := range b.Images {
		b.Counts[r.State]++
		if r.State == rotation.StatePending {
			b.Pending++
		}
	}
	copies := copyIndex(b.Images)
	b.ToCopy = 0
	for _, r := range b.Images {
		if !copySource(r, p) {
			continue
		}
		for _, t := range p.CopyTo {
			i, ok := copies[copyKey{r.InstanceID, t.Region}]
			if !ok || b.Images[i].State == rotation.StateDeferred {
				b.ToCopy++
			}
		}
	}
	sortRecords(b.Images)
}

// stateOrder groups records: what is still moving first, then outcomes.
var stateOrder = map[string]int{
	rotation.StatePending:   0,
	rotation.StateDeferred:  1,
	rotation.StateAvailable: 2,
	rotation.StatePlanned:   3,
	rotation.StateFailed:    4,
	rotation.StateTimedOut:  5,
	rotation.StateError:     6,
	rotation.StateRefused:   7,
}

func order(state string) int {
	if o, ok := stateOrder[state]; ok {
		return o
	}
	return len(stateOrder)
}

// sortRecords orders records by state group, region, instance, source first.
func sortRecords(rs []rotation.Record) {
	slices.SortStableFunc(rs, func(a, b rotation.Record) int {
		return cmp.Or(
			cmp.Compare(order(a.State), order(b.State)),
			cmp.Compare(a.State, b.State),
			cmp.Compare(a.Region, b.Region),
			cmp.Compare(a.InstanceID, b.InstanceID),
			cmp.Compare(a.SourceImageID, b.SourceImageID),
		)
	})
}

// nextWait is the Wait before the next poll: pollIntervalSeconds growing
// by half each poll (images take minutes, copies up to hours, so polling
// at a fixed short interval would mostly burn Describe calls and state
// transitions), capped at 5 intervals and MaxWaitSeconds (but never below
// the interval), and never far past the timeout, so a timeout is reported
// when it happens.
func nextWait(p rotation.Policy, polls int, now, due time.Time) int {
	interval := float64(p.PollIntervalSeconds)
	limit := math.Max(interval, math.Min(5*interval, MaxWaitSeconds))
	w := math.Min(interval*math.Pow(1.5, float64(polls)), limit)
	if left := due.Sub(now).Seconds(); left+1 < w {
		w = math.Max(left+1, 1)
	}
	return int(math.Ceil(w))
}

// waitFor is the Wait the state machine does next: at least a second when
// images are pending or copies remain to start (Wait's SecondsPath), and
// none when nothing is in flight (everything refused, or a dry run), so such
// a batch goes straight on.
func waitFor(b Batch, wait int) int {
	if b.Pending == 0 && b.ToCopy == 0 && b.Counts[rotation.StateDeferred] == 0 {
		return 0
	}
	return max(wait, 1)
}

// errText is the message a record carries for err.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// workers returns a group that keeps at most ec2x.Workers calls in flight.
func workers() *errgroup.Group {
	g := new(errgroup.Group)
	g.SetLimit(ec2x.Workers)
	return g
}
