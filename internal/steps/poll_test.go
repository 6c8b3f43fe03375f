package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

func TestPoll_OneDescribeImagesPerRegionWhateverTheNumberOfImages(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			e := newSimEnv(t)
			ctx := context.Background()
			ids := e.run(testHome, n, nil)
			b, err := e.snapshot().Handle(ctx, e.batch(copyPolicy(t, ""), ids))
			if err != nil {
				t.Fatal(err)
			}
			e.sim.ResetStats()
			if b, err = e.poll().Handle(ctx, b); err != nil { // sources still pending
				t.Fatal(err)
			}
			// Retries of a call (a transport hiccup on a loaded machine) are
			// the SDK's, not poll's: count first attempts.
			if st := e.sim.Stats().FirstAttempts(); st.Calls[testHome]["DescribeImages"] != 1 || st.Total("") != 1 {
				t.Errorf("polling %d pending sources: calls %v, want one DescribeImages in %s", n, st.Calls, testHome)
			}
			e.clock.Advance(2 * time.Minute)
			if b, err = e.poll().Handle(ctx, b); err != nil {
				t.Fatal(err)
			}
			if b.ToCopy != 2*n {
				t.Fatalf("ToCopy = %d, want %d", b.ToCopy, 2*n)
			}
			if b, err = e.copier().Handle(ctx, b); err != nil {
				t.Fatal(err)
			}
			if b.Pending != 2*n {
				t.Fatalf("pending copies = %d, want %d", b.Pending, 2*n)
			}
			e.sim.ResetStats()
			if b, err = e.poll().Handle(ctx, b); err != nil {
				t.Fatal(err)
			}
			st := e.sim.Stats().FirstAttempts()
			for _, r := range []string{"eu-west-1", "ap-southeast-2"} {
				if got := st.Calls[r]["DescribeImages"]; got != 1 {
					t.Errorf("%s: DescribeImages = %d, want 1", r, got)
				}
			}
			if st.Total("") != 2 {
				t.Errorf("poll of %d copies made %d calls: %v", 2*n, st.Total(""), st.Calls)
			}
		})
	}
}

func TestPoll_FailedImageIsDeregisteredWithAllItsSnapshots(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 3, nil)
	bad := ids[1]
	e.sim.FailNextImage(testHome, bad, "disk read error")

	b, err := e.snapshot().Handle(ctx, e.batch(testPolicy(t, ""), ids))
	if err != nil {
		t.Fatal(err)
	}
	var badImage string
	for _, r := range b.Images {
		if r.InstanceID == bad {
			badImage = r.ImageID
		}
	}
	var badSnaps []string
	for _, sn := range e.snapshots(testHome) {
		if ec2x.TagMap(sn.Tags)[rotation.TagInstanceID] == bad {
			badSnaps = append(badSnaps, aws.ToString(sn.SnapshotId))
		}
	}
	if len(badSnaps) != 2 {
		t.Fatalf("failed image has %d snapshots in the sim, want 2", len(badSnaps))
	}

	e.clock.Advance(2 * time.Minute)
	if b, err = e.poll().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	failed := recordsIn(b, rotation.StateFailed)
	if len(failed) != 1 || failed[0].InstanceID != bad || !strings.Contains(failed[0].Error, "disk read error") {
		t.Fatalf("failed records = %+v", failed)
	}
	if len(b.Cleanup) != 1 || b.Cleanup[0].ImageID != badImage || b.Cleanup[0].State != rotation.StateFailed {
		t.Fatalf("cleanup = %+v", b.Cleanup)
	}
	slices.Sort(badSnaps)
	if !slices.Equal(b.Cleanup[0].SnapshotIDs, badSnaps) {
		t.Errorf("cleanup reports snapshots %v, want %v", b.Cleanup[0].SnapshotIDs, badSnaps)
	}
	for _, img := range e.images(testHome) {
		if aws.ToString(img.ImageId) == badImage {
			t.Errorf("failed image %s still registered (%s)", badImage, img.State)
		}
	}
	for _, sn := range e.snapshots(testHome) {
		if slices.Contains(badSnaps, aws.ToString(sn.SnapshotId)) {
			t.Errorf("snapshot %s of the failed image still exists", aws.ToString(sn.SnapshotId))
		}
	}
	if b.Counts[rotation.StateAvailable] != 2 || b.Pending != 0 {
		t.Errorf("counts %v pending %d", b.Counts, b.Pending)
	}
	// A second poll does not clean up again.
	e.sim.ResetStats()
	if b, err = e.poll().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if m := mutatingCalls(e.sim.Stats()); len(m) > 0 || len(b.Cleanup) != 1 {
		t.Errorf("second poll: calls %v cleanup %+v", m, b.Cleanup)
	}
}

func TestPoll_PendingPastTheTimeoutIsTimedOut(t *testing.T) {
	e := newSimEnv(t, func(o *ec2sim.Options) { o.ImageDelay = time.Hour })
	ctx := context.Background()
	ids := e.run(testHome, 2, nil)
	b, err := e.snapshot().Handle(ctx, e.batch(testPolicy(t, `,"timeoutMinutes":5,"pollIntervalSeconds":60`), ids))
	if err != nil {
		t.Fatal(err)
	}
	var waits []int
	for b.Pending > 0 {
		e.clock.Advance(time.Duration(b.WaitSeconds) * time.Second)
		if b, err = e.poll().Handle(ctx, b); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, b.WaitSeconds)
		if len(waits) > 10 {
			t.Fatalf("never timed out: %v", waits)
		}
	}
	if got := recordsIn(b, rotation.StateTimedOut); len(got) != 2 || !strings.Contains(got[0].Error, "5 minutes") {
		t.Errorf("timed-out records = %+v", got)
	}
	// 60 → 90 → 135, then the timeout (300 s after the start) cuts the wait.
	if !slices.Equal(waits[:2], []int{90, 135}) {
		t.Errorf("waits = %v, want backoff 90, 135, ...", waits)
	}
	if !e.clock.Now().Before(testStart.Add(5*time.Minute + 2*time.Second)) {
		t.Errorf("timeout reported late, at %s", e.clock.Now())
	}
}

func TestPoll_ErrorNamesReachTheLambdaResponse(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 1, nil)
	b, err := e.snapshot().Handle(context.Background(), e.batch(testPolicy(t, ""), ids))
	if err != nil {
		t.Fatal(err)
	}
	bad := b
	bad.InstanceIDs = []string{"i-nothex"}
	if typ, msg := lambdaErrorType(t, NewPoll(e.clients, Env{Now: e.now}).Handle, bad); typ != "InvalidInputError" || !strings.Contains(msg, "instanceIds[0]") {
		t.Errorf("bad instance id: errorType %q message %q", typ, msg)
	}
	if typ, _ := lambdaErrorType(t, NewPoll(deadClients(t), Env{Now: e.now}).Handle, b); typ != "RetryableError" {
		t.Errorf("failing EC2: errorType %q, want RetryableError", typ)
	}
	// Throttling that outlives every SDK retry.
	if err := e.sim.Inject(ec2sim.Fault{Action: "DescribeImages", Code: "RequestLimitExceeded", Probability: 1}); err != nil {
		t.Fatal(err)
	}
	if typ, _ := lambdaErrorType(t, NewPoll(e.clients, Env{Now: e.now}).Handle, b); typ != "RetryableError" {
		t.Errorf("throttled: errorType %q, want RetryableError", typ)
	}
}

// pollCleanupWorld snapshots one instance and returns the batch (its record
// pending), the image and its snapshots.
func pollCleanupWorld(t *testing.T, e *simEnv) (Batch, string, []string) {
	t.Helper()
	ids := e.run(testHome, 1, nil)
	b, err := e.snapshot().Handle(context.Background(), e.batch(testPolicy(t, ""), ids))
	if err != nil {
		t.Fatal(err)
	}
	image := b.Images[0].ImageID
	var snaps []string
	for _, sn := range e.snapshots(testHome) {
		if ec2x.TagMap(sn.Tags)[rotation.TagInstanceID] == ids[0] {
			snaps = append(snaps, aws.ToString(sn.SnapshotId))
		}
	}
	if len(snaps) == 0 {
		t.Fatal("the image has no snapshots in the sim")
	}
	return b, image, snaps
}

// requireKept fails unless the image and its snapshots still exist.
func (e *simEnv) requireKept(image string, snaps []string, why string) {
	e.t.Helper()
	registered := false
	out, err := e.clients.EC2(testHome).DescribeImages(context.Background(), &ec2.DescribeImagesInput{
		Owners: []string{"self"}, IncludeDisabled: aws.Bool(true)})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, img := range out.Images {
		registered = registered || aws.ToString(img.ImageId) == image
	}
	if !registered {
		e.t.Errorf("%s: image %s was deregistered", why, image)
	}
	left := map[string]bool{}
	for _, sn := range e.snapshots(testHome) {
		left[aws.ToString(sn.SnapshotId)] = true
	}
	for _, s := range snaps {
		if !left[s] {
			e.t.Errorf("%s: snapshot %s was deleted", why, s)
		}
	}
}

func TestPoll_LeavesAnImageDisabledByAPerson(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	b, image, snaps := pollCleanupWorld(t, e)
	// The image became available and a person disabled it before the poll
	// saw it: a disabled image is kept on purpose, not a failed one.
	e.clock.Advance(2 * time.Minute)
	if _, err := e.clients.EC2(testHome).DisableImage(ctx, &ec2.DisableImageInput{ImageId: aws.String(image)}); err != nil {
		t.Fatal(err)
	}
	out, err := e.poll().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	e.requireKept(image, snaps, "disabled image")
	if got := recordsIn(out, rotation.StateError); len(got) != 1 || !strings.Contains(got[0].Error, "disabled") {
		t.Errorf("records = %+v, want one error naming the disabled image", out.Images)
	}
	if len(out.Cleanup) != 0 {
		t.Errorf("cleanup = %+v, want none", out.Cleanup)
	}
}

func TestPoll_NeverCleansUpAnImageOfAnotherPolicy(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	// Someone else's image of the instance ends failed; a hand-made batch
	// names it.
	e.sim.FailNextImage(testHome, ids[0], "disk read error")
	made, err := e.clients.EC2(testHome).CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId: aws.String(ids[0]),
		Name:       aws.String("golden-base"),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeImage, Tags: []types.Tag{{Key: aws.String("Team"), Value: aws.String("core")}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	image := aws.ToString(made.ImageId)
	var snaps []string
	for _, sn := range e.snapshots(testHome) {
		snaps = append(snaps, aws.ToString(sn.SnapshotId))
	}
	b := e.batch(testPolicy(t, ""), ids)
	b.Images = []rotation.Record{{InstanceID: ids[0], Region: testHome, ImageID: image, State: rotation.StatePending}}
	e.clock.Advance(2 * time.Minute)
	out, err := e.poll().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	e.requireKept(image, snaps, "another policy's failed image")
	if len(out.Cleanup) != 0 {
		t.Errorf("cleanup = %+v, want none", out.Cleanup)
	}
	if got := recordsIn(out, rotation.StateError); len(got) != 1 || !strings.Contains(got[0].Error, "not") {
		t.Errorf("records = %+v, want one error saying the image is not this policy's", out.Images)
	}
}

func TestPoll_RerunFindsADisabledImageAndLeavesIt(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	b, image, snaps := pollCleanupWorld(t, e)
	e.clock.Advance(2 * time.Minute)
	if _, err := e.clients.EC2(testHome).DisableImage(ctx, &ec2.DisableImageInput{ImageId: aws.String(image)}); err != nil {
		t.Fatal(err)
	}
	// The same rotation again: its name is taken by the disabled image,
	// which the rerun must find (not wait for it to be listed).
	again, err := e.snapshot().Handle(ctx, e.batch(b.Policy, b.InstanceIDs))
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if r := again.Images[0]; r.ImageID != image {
		t.Fatalf("rerun record = %+v, want image %s adopted", r, image)
	}
	out, err := e.poll().Handle(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	e.requireKept(image, snaps, "disabled image found by a rerun")
	if got := recordsIn(out, rotation.StateError); len(got) != 1 || !strings.Contains(got[0].Error, "disabled") {
		t.Errorf("records = %+v, want one error naming the disabled image", out.Images)
	}
}
