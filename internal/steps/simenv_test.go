package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// The handler tests run the real handlers with the real SDK clients against
// the simulator, on a manual clock.

var (
	testHome    = "us-east-1"
	testRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"}
	testStart   = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
)

// fastBackoff keeps the real retry loop (attempts, quota) but waits a
// millisecond between attempts instead of up to 20 s.
type fastBackoff struct{}

func (fastBackoff) BackoffDelay(int, error) (time.Duration, error) { return time.Millisecond, nil }

type simEnv struct {
	t       testing.TB
	sim     *ec2sim.Sim
	clock   *ec2sim.ManualClock
	clients *ec2x.Clients
}

// newSimEnv starts a simulator in testRegions: images take one (simulated)
// minute, copies two.
func newSimEnv(t testing.TB, opts ...func(*ec2sim.Options)) *simEnv {
	t.Helper()
	clock := ec2sim.NewManualClock(testStart)
	o := ec2sim.Options{Regions: testRegions, Clock: clock, ImageDelay: time.Minute, CopyDelay: 2 * time.Minute, Seed: 7}
	for _, f := range opts {
		f(&o)
	}
	sim := ec2sim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:       testHome,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSIM", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	// Unpaced: the simulator's clock is manual, so pacing by EC2's
	// real-time refill rates would only slow the tests down.
	return &simEnv{t: t, sim: sim, clock: clock, clients: ec2x.NewClients(cfg, ec2x.WithBackoff(fastBackoff{}), ec2x.WithoutPacing())}
}

func (e *simEnv) now() time.Time { return e.clock.Now() }

// run starts n instances of the policy "nightly" in region with extra tags.
func (e *simEnv) run(region string, n int, tags map[string]string) []string {
	e.t.Helper()
	ids := make([]string, 0, n)
	for range n {
		all := map[string]string{rotation.TagPolicy: "nightly", "Name": "web", "Team": "core"}
		for k, v := range tags {
			all[k] = v
		}
		id, err := e.sim.RunInstance(region, ec2sim.InstanceSpec{Tags: all, Volumes: []int{8, 20}})
		if err != nil {
			e.t.Fatalf("RunInstance: %v", err)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// policy decodes a policy; extra is merged into a minimal valid one.
func testPolicy(t testing.TB, extra string) rotation.Policy {
	t.Helper()
	raw := `{"name":"nightly","retention":{"keep":3},"copyInstanceTags":["Name"],"tags":{"Environment":"test"}` + extra + `}`
	p, err := rotation.DecodePolicy([]byte(raw))
	if err != nil {
		t.Fatalf("policy %s: %v", raw, err)
	}
	return p
}

func copyPolicy(t testing.TB, extra string) rotation.Policy {
	return testPolicy(t, `,"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2","kmsKeyId":"alias/ami-dr"}]`+extra)
}

func (e *simEnv) batch(p rotation.Policy, ids []string) Batch {
	rot := rotation.NewRotation(testStart, rotation.TriggerSchedule, testStart)
	rot.Home = testHome
	return Batch{Policy: p, Rotation: rot, InstanceIDs: ids}
}

func (e *simEnv) snapshot() *Snapshot { return NewSnapshot(e.clients, Env{Now: e.now}) }
func (e *simEnv) poll() *Poll         { return NewPoll(e.clients, Env{Now: e.now}) }
func (e *simEnv) copier() *Copy       { return NewCopy(e.clients, Env{Now: e.now}) }
func (e *simEnv) tagger() *Tag        { return NewTag(e.clients, Env{Now: e.now}) }
func (e *simEnv) discover() *Discover { return NewDiscover(e.clients, Env{Now: e.now}) }

// rotate runs a batch through the image path as the state machine does:
// snapshot, then wait/poll (copying when asked) until nothing is pending,
// then tag. It fails the test after too many rounds.
func (e *simEnv) rotate(ctx context.Context, b Batch) Batch {
	e.t.Helper()
	b, err := e.snapshot().Handle(ctx, b)
	if err != nil {
		e.t.Fatalf("snapshot: %v", err)
	}
	for round := 0; ; round++ {
		if round > 50 {
			e.t.Fatalf("batch did not settle: %+v", b.Counts)
		}
		e.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
		if b, err = e.poll().Handle(ctx, b); err != nil {
			e.t.Fatalf("poll: %v", err)
		}
		if b.ToCopy > 0 {
			if b, err = e.copier().Handle(ctx, b); err != nil {
				e.t.Fatalf("copy: %v", err)
			}
			continue
		}
		if b.Pending == 0 {
			break
		}
	}
	if b, err = e.tagger().Handle(ctx, b); err != nil {
		e.t.Fatalf("tag: %v", err)
	}
	return b
}

// images lists the account's images in region.
func (e *simEnv) images(region string) []types.Image {
	e.t.Helper()
	out, err := e.clients.EC2(region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		e.t.Fatalf("DescribeImages: %v", err)
	}
	return out.Images
}

// snapshots lists the account's snapshots in region.
func (e *simEnv) snapshots(region string) []types.Snapshot {
	e.t.Helper()
	out, err := e.clients.EC2(region).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	if err != nil {
		e.t.Fatalf("DescribeSnapshots: %v", err)
	}
	return out.Snapshots
}

// inventory renders every image and snapshot (with tags, state, launch
// permissions left aside) of every region, for before/after comparisons.
func (e *simEnv) inventory() string {
	e.t.Helper()
	var b strings.Builder
	for _, r := range testRegions {
		for _, img := range e.images(r) {
			b.WriteString(r + " " + aws.ToString(img.ImageId) + " " + string(img.State) + " " + aws.ToString(img.DeprecationTime) + " " + tagString(img.Tags) + "\n")
		}
		for _, sn := range e.snapshots(r) {
			b.WriteString(r + " " + aws.ToString(sn.SnapshotId) + " " + tagString(sn.Tags) + "\n")
		}
	}
	return b.String()
}

func tagString(tags []types.Tag) string {
	m := ec2x.TagMap(tags)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// mutatingCalls counts every call that is not a read.
func mutatingCalls(st ec2sim.Stats) map[string]int {
	out := map[string]int{}
	for region, m := range st.Calls {
		for action, n := range m {
			a := action[strings.LastIndex(action, ":")+1:]
			if strings.HasPrefix(a, "Describe") || strings.HasPrefix(a, "Get") || strings.HasPrefix(a, "List") {
				continue
			}
			out[region+" "+action] += n
		}
	}
	return out
}

// lambdaErrorType invokes h through aws-lambda-go's handler wrapper, as the
// Lambda runtime does, and returns the errorType the response would carry
// (computed as aws-lambda-go does: the Go type name of the returned error).
func lambdaErrorType(t *testing.T, handler any, payload any) (string, string) {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lambda.NewHandler(handler).Invoke(context.Background(), raw)
	if err == nil {
		return "", ""
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("handler returned a wrapped error %T; Step Functions would see only its wrapper's name", err)
	}
	typ := reflect.TypeOf(err)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ.Name(), err.Error()
}

// deadClients reach an EC2 that answers every call with 503 Unavailable,
// which outlives the SDK's retries as a RetryableError. (A refused
// connection is a configuration problem, a FatalError: see ec2x.Explain.)
func deadClients(t *testing.T) *ec2x.Clients {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>Unavailable</Code><Message>The service is unavailable.</Message></Error></Errors><RequestID>dead</RequestID></Response>`)
	}))
	t.Cleanup(srv.Close)
	return ec2x.NewClients(aws.Config{
		Region:       testHome,
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
	}, ec2x.WithBackoff(fastBackoff{}))
}

func recordsIn(b Batch, state string) []rotation.Record {
	var out []rotation.Record
	for _, r := range b.Images {
		if r.State == state {
			out = append(out, r)
		}
	}
	return out
}

func sources(b Batch) []rotation.Record {
	var out []rotation.Record
	for _, r := range b.Images {
		if r.SourceImageID == "" {
			out = append(out, r)
		}
	}
	return out
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// fixedNow is a clock that always reads t.
func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }
