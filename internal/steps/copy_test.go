package steps

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

var copyRegions = []string{"eu-west-1", "ap-southeast-2", "us-west-2"}

func threeRegionPolicy(t testing.TB, extra string) rotation.Policy {
	return testPolicy(t, `,"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2","kmsKeyId":"alias/ami-dr"},{"region":"us-west-2"}]`+extra)
}

// availableSources snapshots ids and polls until the sources are available.
func (e *simEnv) availableSources(ctx context.Context, p rotation.Policy, ids []string) Batch {
	e.t.Helper()
	b, err := e.snapshot().Handle(ctx, e.batch(p, ids))
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	if b, err = e.poll().Handle(ctx, b); err != nil {
		e.t.Fatal(err)
	}
	if b.Counts[rotation.StateAvailable] != len(ids) {
		e.t.Fatalf("sources not available: %v", b.Counts)
	}
	return b
}

func TestCopy_IntoThreeRegionsRetriedMakesOneCopyPerRegion(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 3, nil)
	b := e.availableSources(ctx, threeRegionPolicy(t, ""), ids)
	if b.ToCopy != 9 {
		t.Fatalf("ToCopy = %d, want 9", b.ToCopy)
	}

	first, err := e.copier().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	// The same input again (the first answer was lost), twice at once.
	var wg sync.WaitGroup
	retried := make([]Batch, 2)
	for i := range retried {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if retried[i], err = e.copier().Handle(ctx, b); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// And the next round with the first answer: nothing left to copy.
	e.sim.ResetStats()
	again, err := e.copier().Handle(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Stats().Total("CopyImage"); n != 0 {
		t.Errorf("copy with every copy recorded called CopyImage %d times", n)
	}

	want := map[string]string{} // instance/region → copy id
	for _, r := range first.Images {
		if r.SourceImageID != "" {
			want[r.InstanceID+"/"+r.Region] = r.ImageID
		}
	}
	if len(want) != 9 || first.ToCopy != 0 || first.Pending != 9 {
		t.Fatalf("first copy: %d copies, toCopy %d, pending %d", len(want), first.ToCopy, first.Pending)
	}
	for _, out := range append(retried, again) {
		for _, r := range out.Images {
			if r.SourceImageID != "" && want[r.InstanceID+"/"+r.Region] != r.ImageID {
				t.Errorf("retry reports copy %s for %s/%s, first made %s", r.ImageID, r.InstanceID, r.Region, want[r.InstanceID+"/"+r.Region])
			}
		}
	}
	for _, region := range copyRegions {
		imgs := e.images(region)
		if len(imgs) != len(ids) {
			t.Errorf("%s has %d images, want %d (one copy per instance)", region, len(imgs), len(ids))
		}
		for _, img := range imgs {
			tags := ec2x.TagMap(img.Tags)
			if tags[rotation.TagSourceRegion] != testHome || tags[rotation.TagSourceImage] == "" ||
				tags["Name"] != "web" || tags["Environment"] != "test" || tags[rotation.TagRotation] != "20261125T0300Z" {
				t.Errorf("copy %s in %s tags = %v", aws.ToString(img.ImageId), region, tags)
			}
			if !strings.HasPrefix(aws.ToString(img.Name), "amirotate-nightly-i-") {
				t.Errorf("copy name %q", aws.ToString(img.Name))
			}
		}
	}
}

func TestCopy_EncryptsWithTheRegionsKMSKey(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	b := e.availableSources(ctx, threeRegionPolicy(t, ""), e.run(testHome, 1, nil))
	if _, err := e.copier().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, region := range copyRegions {
		for _, img := range e.images(region) {
			encrypted := false
			for _, bdm := range img.BlockDeviceMappings {
				if bdm.Ebs != nil && aws.ToBool(bdm.Ebs.Encrypted) {
					encrypted = true
				}
			}
			if want := region == "ap-southeast-2"; encrypted != want {
				t.Errorf("copy in %s encrypted = %v, want %v", region, encrypted, want)
			}
		}
	}
}

func TestCopy_ConcurrentCopyLimitDefersInsteadOfFailing(t *testing.T) {
	e := newSimEnv(t, func(o *ec2sim.Options) { o.MaxConcurrentCopies = 2 })
	ctx := context.Background()
	ids := e.run(testHome, 5, nil)
	p := testPolicy(t, `,"copyTo":[{"region":"eu-west-1"}]`)
	b := e.availableSources(ctx, p, ids)

	b, err := e.copier().Handle(ctx, b)
	if err != nil {
		t.Fatalf("copy limit must not fail the step: %v", err)
	}
	deferred := recordsIn(b, rotation.StateDeferred)
	if len(recordsIn(b, rotation.StatePending)) != 2 || len(deferred) != 3 || b.ToCopy != 3 {
		t.Fatalf("after the first copy round: counts %v toCopy %d", b.Counts, b.ToCopy)
	}
	if !strings.Contains(deferred[0].Error, "limit") && !strings.Contains(deferred[0].Error, ec2x.CodeCopyLimit) {
		t.Errorf("deferred record does not say why: %+v", deferred[0])
	}
	if b.WaitSeconds <= p.PollIntervalSeconds {
		t.Errorf("WaitSeconds = %d, want a backoff above %d", b.WaitSeconds, p.PollIntervalSeconds)
	}
	// The state machine loops Wait → Poll → Copy until every copy started.
	for round := 0; b.ToCopy > 0 || b.Pending > 0; round++ {
		if round > 20 {
			t.Fatalf("copies never finished: %v", b.Counts)
		}
		e.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
		if b, err = e.poll().Handle(ctx, b); err != nil {
			t.Fatal(err)
		}
		if b.ToCopy > 0 {
			if b, err = e.copier().Handle(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := b.Counts[rotation.StateAvailable]; got != 10 {
		t.Errorf("available = %d, want 10 (5 sources + 5 copies): %v", got, b.Counts)
	}
	if n := len(e.images("eu-west-1")); n != 5 {
		t.Errorf("eu-west-1 has %d images, want 5", n)
	}
}

func TestCopy_DryRunPlansCopiesAndChangesNothing(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 2, nil)
	before := e.inventory()
	e.sim.ResetStats()
	b, err := e.snapshot().Handle(ctx, e.batch(threeRegionPolicy(t, `,"dryRun":true`), ids))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = e.poll().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b.ToCopy != 6 {
		t.Fatalf("dry run ToCopy = %d, want 6", b.ToCopy)
	}
	if b, err = e.copier().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b, err = e.tagger().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := len(recordsIn(b, rotation.StatePlanned)); got != 8 || b.ToCopy != 0 || b.Pending != 0 {
		t.Errorf("planned = %d toCopy %d pending %d, want 8/0/0", got, b.ToCopy, b.Pending)
	}
	if m := mutatingCalls(e.sim.Stats()); len(m) > 0 {
		t.Errorf("dry run made mutating calls: %v", m)
	}
	if after := e.inventory(); after != before {
		t.Errorf("dry run changed the inventory:\n%s\nvs\n%s", before, after)
	}
}

func TestCopy_ErrorNamesReachTheLambdaResponse(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	b := e.availableSources(ctx, threeRegionPolicy(t, ""), e.run(testHome, 1, nil))

	bad := b
	bad.Policy.CopyTo = []rotation.CopyTarget{{Region: testHome}}
	if typ, msg := lambdaErrorType(t, NewCopy(e.clients, Env{Now: e.now}).Handle, bad); typ != "InvalidInputError" || !strings.Contains(msg, "copyTo[0]") {
		t.Errorf("copy into the home region: errorType %q message %q", typ, msg)
	}
	noName := b
	noName.Policy.Name = ""
	if typ, msg := lambdaErrorType(t, NewCopy(e.clients, Env{Now: e.now}).Handle, noName); typ != "InvalidInputError" || !strings.Contains(msg, "name") {
		t.Errorf("policy without a name: errorType %q message %q", typ, msg)
	}
	// Copy defers what throttling refused; reading source tags is what can fail the step.
	if typ, _ := lambdaErrorType(t, NewCopy(deadClients(t), Env{Now: e.now}).Handle, b); typ != "RetryableError" {
		t.Errorf("failing EC2: errorType %q, want RetryableError", typ)
	}
}
