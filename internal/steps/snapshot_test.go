package steps

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

func TestSnapshot_CreatesTaggedImagesWithDeterministicNames(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 3, nil)
	p := testPolicy(t, `,"noReboot":true`)
	b, err := e.snapshot().Handle(context.Background(), e.batch(p, ids))
	if err != nil {
		t.Fatal(err)
	}
	if b.Pending != 3 || b.ToCopy != 0 || b.WaitSeconds != p.PollIntervalSeconds || len(b.Images) != 3 {
		t.Fatalf("batch = pending %d toCopy %d wait %d images %d", b.Pending, b.ToCopy, b.WaitSeconds, len(b.Images))
	}
	byName := map[string]string{}
	for _, img := range e.images(testHome) {
		byName[aws.ToString(img.Name)] = aws.ToString(img.ImageId)
		tags := ec2x.TagMap(img.Tags)
		for k, want := range map[string]string{
			rotation.TagPolicy: "nightly", rotation.TagRotation: "20261125T0300Z", rotation.TagCreatedBy: "amirotate",
			"Environment": "test", "Name": "web",
		} {
			if tags[k] != want {
				t.Errorf("image %s tag %s = %q, want %q", aws.ToString(img.ImageId), k, tags[k], want)
			}
		}
		if _, ok := tags["Team"]; ok {
			t.Errorf("instance tag Team copied although copyInstanceTags lists only Name")
		}
	}
	for _, r := range b.Images {
		want := "amirotate-nightly-" + r.InstanceID + "-20261125T0300Z"
		if r.Name != want || byName[want] != r.ImageID || r.State != rotation.StatePending || r.Region != testHome {
			t.Errorf("record %+v, want name %s and image %s", r, want, byName[want])
		}
	}
	snaps := e.snapshots(testHome)
	if len(snaps) != 6 { // two volumes each
		t.Fatalf("snapshots = %d, want 6", len(snaps))
	}
	for _, sn := range snaps {
		if ec2x.TagMap(sn.Tags)[rotation.TagPolicy] != "nightly" {
			t.Errorf("snapshot %s not tagged: %v", aws.ToString(sn.SnapshotId), sn.Tags)
		}
	}
}

func TestSnapshot_DuplicatedInvocationMakesOneImage(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 4, nil)
	in := e.batch(testPolicy(t, ""), ids)
	ctx := context.Background()

	first, err := e.snapshot().Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// A retried invocation (same input), and two more at the same time.
	var wg sync.WaitGroup
	outs := make([]Batch, 3)
	errs := make([]error, 3)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = e.snapshot().Handle(ctx, in)
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("duplicate %d: %v", i, errs[i])
		}
		for j, r := range outs[i].Images {
			if r.ImageID != first.Images[j].ImageID || r.State != rotation.StatePending {
				t.Errorf("duplicate %d record %d = %+v, want image %s", i, j, r, first.Images[j].ImageID)
			}
		}
	}
	if n := len(e.images(testHome)); n != len(ids) {
		t.Errorf("images = %d, want %d (one per instance)", n, len(ids))
	}
	if n := e.sim.Stats().Calls[testHome]["CreateImage"]; n != 4*len(ids) {
		t.Errorf("CreateImage calls = %d, want %d", n, 4*len(ids))
	}
}

func TestSnapshot_RefusesInstancesThatNoLongerQualify(t *testing.T) {
	e := newSimEnv(t)
	ok := e.run(testHome, 1, nil)
	stopped, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "nightly"}, Stopped: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "weekly"}})
	if err != nil {
		t.Fatal(err)
	}
	gone := "i-0000000000000dead"
	b, err := e.snapshot().Handle(context.Background(), e.batch(testPolicy(t, ""), []string{ok[0], stopped, other, gone}))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]rotation.Record{}
	for _, r := range b.Images {
		got[r.InstanceID] = r
	}
	if got[ok[0]].State != rotation.StatePending || got[stopped].State != rotation.StatePending {
		t.Errorf("running and stopped instances must be imaged: %+v %+v", got[ok[0]], got[stopped])
	}
	for id, want := range map[string]string{other: "selector", gone: "not found"} {
		if r := got[id]; r.State != rotation.StateRefused || !strings.Contains(r.Error, want) {
			t.Errorf("%s: %+v, want refused mentioning %q", id, r, want)
		}
	}
	if b.Counts[rotation.StateRefused] != 2 || b.Pending != 2 {
		t.Errorf("counts = %v pending %d", b.Counts, b.Pending)
	}
}

func TestSnapshot_DryRunChangesNothing(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 3, nil)
	before := e.inventory()
	e.sim.ResetStats()
	b, err := e.snapshot().Handle(context.Background(), e.batch(testPolicy(t, `,"dryRun":true`), ids))
	if err != nil {
		t.Fatal(err)
	}
	if m := mutatingCalls(e.sim.Stats()); len(m) > 0 {
		t.Errorf("dry run made mutating calls: %v", m)
	}
	if after := e.inventory(); after != before {
		t.Errorf("inventory changed:\n%s\nvs\n%s", before, after)
	}
	if len(recordsIn(b, rotation.StatePlanned)) != 3 || b.Pending != 0 {
		t.Errorf("want 3 planned records, got %+v", b.Images)
	}
	if b.WaitSeconds != 0 {
		t.Errorf("dry run waits %d s for nothing", b.WaitSeconds)
	}
}

func TestSnapshot_ErrorNamesReachTheLambdaResponse(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 1, nil)
	good := e.batch(testPolicy(t, ""), ids)

	bad := good
	bad.Policy.Retention = rotation.Retention{}
	typ, msg := lambdaErrorType(t, NewSnapshot(e.clients, nil).Handle, bad)
	if typ != "InvalidInputError" || !strings.Contains(msg, "retention") {
		t.Errorf("bad policy: errorType %q message %q", typ, msg)
	}
	noRotation := good
	noRotation.Rotation.ID = ""
	if typ, msg := lambdaErrorType(t, NewSnapshot(e.clients, nil).Handle, noRotation); typ != "InvalidInputError" || !strings.Contains(msg, "rotation.id") {
		t.Errorf("missing rotation id: errorType %q message %q", typ, msg)
	}
	if typ, _ := lambdaErrorType(t, NewSnapshot(deadClients(t), nil).Handle, good); typ != "RetryableError" {
		t.Errorf("unreachable EC2: errorType %q, want RetryableError", typ)
	}
}
