package steps

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// step runs one handler as the state machine's Task does: a RetryableError
// is retried (the ASL retries it with backoff), anything else fails.
func step(t testing.TB, name string, h func(context.Context, Batch) (Batch, error), b Batch) Batch {
	t.Helper()
	for attempt := 1; ; attempt++ {
		out, err := h(context.Background(), b)
		var re ec2x.RetryableError
		switch {
		case err == nil:
			return out
		case errors.As(err, &re) && attempt < 4:
			continue
		default:
			t.Fatalf("%s (attempt %d): %T %v", name, attempt, err, err)
		}
	}
}

// pipeline runs discover and, per batch, the image path to the end.
func (e *simEnv) pipeline(input DiscoverIn) (DiscoverOut, []Batch) {
	e.t.Helper()
	var d DiscoverOut
	for attempt := 1; ; attempt++ {
		var err error
		if d, err = e.discover().Handle(context.Background(), input); err == nil {
			break
		} else if attempt == 4 {
			e.t.Fatalf("discover: %v", err)
		}
	}
	var out []Batch
	for _, item := range d.Batches {
		b := step(e.t, "snapshot", e.snapshot().Handle, Batch{Policy: d.Policy, Rotation: d.Rotation, InstanceIDs: item.InstanceIDs})
		for round := 0; ; round++ {
			if round > 60 {
				e.t.Fatalf("batch did not settle: %v", b.Counts)
			}
			e.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
			b = step(e.t, "poll", e.poll().Handle, b)
			if b.ToCopy > 0 {
				b = step(e.t, "copy", e.copier().Handle, b)
				continue
			}
			if b.Pending == 0 {
				break
			}
		}
		out = append(out, step(e.t, "tag", e.tagger().Handle, b))
	}
	return d, out
}

func TestImagePath_SurvivesAThrottlingStorm(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 20, nil)
	// A third of all calls, in every region, answer RequestLimitExceeded.
	if err := e.sim.Inject(ec2sim.Fault{Action: "*", Code: "RequestLimitExceeded", Probability: 1.0 / 3}); err != nil {
		t.Fatal(err)
	}
	in := scheduleInput(`,"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2"}],"deprecateAfterDays":7,"shareWith":["111122223333"],"batchSize":10`)
	d, batches := e.pipeline(in)
	if len(d.Targets) != 20 || len(batches) != 2 {
		t.Fatalf("targets %d batches %d", len(d.Targets), len(batches))
	}
	for _, b := range batches {
		if b.Counts[rotation.StateAvailable] != 30 || len(b.Images) != 30 {
			t.Errorf("batch counts %v, want 30 available", b.Counts)
		}
		for _, r := range b.Images {
			if r.Error != "" {
				t.Errorf("record error after the storm: %+v", r)
			}
		}
	}
	st := e.sim.Stats()
	if st.Faulted < st.Total("")/5 {
		t.Errorf("storm too weak: %d of %d calls throttled", st.Faulted, st.Total(""))
	}
	e.sim.ClearFaults()
	for _, region := range []string{testHome, "eu-west-1", "ap-southeast-2"} {
		perInstance := map[string]int{}
		for _, img := range e.images(region) {
			perInstance[ec2x.TagMap(img.Tags)[rotation.TagInstanceID]]++
		}
		for _, id := range ids {
			if perInstance[id] != 1 {
				t.Errorf("%s: instance %s has %d images, want exactly 1", region, id, perInstance[id])
			}
		}
		if got := len(e.latest(region)); got != 20 {
			t.Errorf("%s: %d images tagged latest, want 20", region, got)
		}
	}
	t.Logf("storm: %d calls, %d throttled", st.Total(""), st.Faulted)
}

func TestImagePath_DryRunChangesNothingAtAll(t *testing.T) {
	e := newSimEnv(t)
	e.run(testHome, 5, nil)
	copyTo := `,"copyTo":[{"region":"eu-west-1"},{"region":"ap-southeast-2"}],"deprecateAfterDays":7,"shareWith":["111122223333"]`
	// A real rotation first, so the dry run has latest tags it could move.
	e.pipeline(scheduleInput(copyTo))
	e.clock.Advance(24 * time.Hour)

	before := e.inventory()
	e.sim.ResetStats()
	in := DiscoverIn{
		Input:     []byte(`{"policy":` + minimalPolicy + copyTo + `,"dryRun":true},"trigger":"manual"}`),
		StartTime: e.clock.Now(),
	}
	_, batches := e.pipeline(in)
	if m := mutatingCalls(e.sim.Stats()); len(m) > 0 {
		t.Errorf("dry run made mutating calls: %v", m)
	}
	if after := e.inventory(); after != before {
		t.Errorf("dry run changed the inventory:\n%s\nvs\n%s", before, after)
	}
	if len(batches) != 1 || batches[0].Counts[rotation.StatePlanned] != 15 {
		t.Errorf("dry run report: %+v", batches)
	}
}

// benchEnv prepares n instances whose sources are available and whose
// copies into two regions are pending, then marks the sources pending again,
// so one poll reads n pending images in each of three regions.
func benchEnv(b *testing.B, n int) (*simEnv, Batch) {
	e := newSimEnv(b, func(o *ec2sim.Options) { o.MaxConcurrentCopies = 1000; o.CopyDelay = 24 * time.Hour })
	ctx := context.Background()
	ids := e.run(testHome, n, nil)
	bt := e.availableSources(ctx, copyPolicy(b, ""), ids)
	bt, err := e.copier().Handle(ctx, bt)
	if err != nil {
		b.Fatal(err)
	}
	for i := range bt.Images {
		bt.Images[i].State = rotation.StatePending
	}
	return e, bt
}

func BenchmarkPoll_100ImagesIn3Regions(b *testing.B) {
	e, bt := benchEnv(b, 100)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.poll().Handle(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if calls := e.sim.Stats().Total("DescribeImages"); calls == 0 {
		b.Fatal("no DescribeImages")
	}
}

func BenchmarkSnapshot_100Instances(b *testing.B) {
	e := newSimEnv(b)
	ids := e.run(testHome, 100, nil)
	p := testPolicy(b, "")
	ctx := context.Background()
	i := 0
	for b.Loop() {
		// A new rotation each round, so every round creates 100 images.
		in := e.batch(p, ids)
		in.Rotation = rotation.NewRotation(testStart.Add(time.Duration(i)*time.Minute), rotation.TriggerSchedule, testStart)
		i++
		if _, err := e.snapshot().Handle(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopy_100ImagesInto2Regions(b *testing.B) {
	e := newSimEnv(b, func(o *ec2sim.Options) { o.MaxConcurrentCopies = 1 << 20 })
	ctx := context.Background()
	ids := e.run(testHome, 100, nil)
	src := e.availableSources(ctx, copyPolicy(b, ""), ids)
	for b.Loop() {
		// Input without copy records: every round starts 200 copies, or
		// adopts them by name after the first (a retried invocation).
		if _, err := e.copier().Handle(ctx, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecount_400Records(b *testing.B) {
	p := rotation.Policy{CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}, {Region: "ap-southeast-2"}, {Region: "us-west-2"}}}
	var images []rotation.Record
	for i := range 100 {
		id := fmt.Sprintf("i-%017x", i)
		images = append(images, rotation.Record{InstanceID: id, Region: testHome, ImageID: "ami-" + id[2:], State: rotation.StateAvailable})
		for _, c := range p.CopyTo {
			images = append(images, rotation.Record{InstanceID: id, Region: c.Region, ImageID: aws.ToString(nil), SourceImageID: "ami-" + id[2:], State: rotation.StatePending})
		}
	}
	for b.Loop() {
		bt := Batch{Images: append([]rotation.Record(nil), images...)}
		recount(&bt, p)
	}
}
