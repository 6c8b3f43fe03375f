package steps

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

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
	if n := e.sim.Stats().FirstAttempts().Calls[testHome]["CreateImage"]; n != 4*len(ids) {
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
	typ, msg := lambdaErrorType(t, NewSnapshot(e.clients, Env{Now: e.now}).Handle, bad)
	if typ != "InvalidInputError" || !strings.Contains(msg, "retention") {
		t.Errorf("bad policy: errorType %q message %q", typ, msg)
	}
	noRotation := good
	noRotation.Rotation.ID = ""
	if typ, msg := lambdaErrorType(t, NewSnapshot(e.clients, Env{Now: e.now}).Handle, noRotation); typ != "InvalidInputError" || !strings.Contains(msg, "rotation.id") {
		t.Errorf("missing rotation id: errorType %q message %q", typ, msg)
	}
	if typ, _ := lambdaErrorType(t, NewSnapshot(deadClients(t), Env{Now: e.now}).Handle, good); typ != "RetryableError" {
		t.Errorf("failing EC2: errorType %q, want RetryableError", typ)
	}
}

// auditWire records the EC2 Query requests of one action as they reach the
// simulator: what the real SDK put on the wire, not what a handler meant to
// send.
type auditWire struct {
	mu     sync.Mutex
	action string
	forms  []url.Values
}

func (w *auditWire) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == w.action {
			w.mu.Lock()
			w.forms = append(w.forms, form)
			w.mu.Unlock()
		}
		next.ServeHTTP(rw, r)
	})
}

// TestSnapshot_CreateImageCarriesNoRebootAndDescription: the snapshot
// handler sends NoReboot exactly as the policy says (true, and EC2's
// default false when the policy leaves it out) and the deterministic
// description, and the description reaches the image.
func TestSnapshot_CreateImageCarriesNoRebootAndDescription(t *testing.T) {
	start := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	clock := ec2sim.NewManualClock(start)
	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1"}, Clock: clock, ImageDelay: time.Minute, Seed: 11})
	wire := &auditWire{action: "CreateImage"}
	srv := httptest.NewServer(wire.wrap(sim))
	t.Cleanup(srv.Close)
	clients := ec2x.NewClients(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDAUDIT", "secret", ""),
		BaseEndpoint: aws.String(srv.URL),
	}, ec2x.WithoutPacing())
	h := NewSnapshot(clients, Env{Now: clock.Now})
	ctx := context.Background()

	for _, tc := range []struct {
		policy, extra, wantNoReboot string
	}{
		{"quiet", `,"noReboot":true`, "true"},
		{"rebooting", `,"noReboot":false`, "false"},
		{"unsaid", ``, "true"}, // no reboot unless the policy says so
	} {
		t.Run(tc.policy, func(t *testing.T) {
			id, err := sim.RunInstance("us-east-1", ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: tc.policy}, Volumes: []int{8}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := rotation.DecodePolicy([]byte(`{"name":"` + tc.policy + `","retention":{"keep":2}` + tc.extra + `}`))
			if err != nil {
				t.Fatal(err)
			}
			rot := rotation.NewRotation(start, rotation.TriggerSchedule, start)
			rot.Home = "us-east-1"
			wire.mu.Lock()
			wire.forms = nil
			wire.mu.Unlock()
			b, err := h.Handle(ctx, Batch{Policy: p, Rotation: rot, InstanceIDs: []string{id}})
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Images) != 1 || b.Images[0].ImageID == "" || b.Images[0].Error != "" {
				t.Fatalf("records %+v", b.Images)
			}
			wire.mu.Lock()
			forms := wire.forms
			wire.mu.Unlock()
			if len(forms) != 1 {
				t.Fatalf("%d CreateImage requests, want 1", len(forms))
			}
			f := forms[0]
			wantDesc := rotation.Description(p.Name, id, rot.ID)
			if f.Get("InstanceId") != id || f.Get("NoReboot") != tc.wantNoReboot || f.Get("Description") != wantDesc || wantDesc == "" {
				t.Errorf("CreateImage sent InstanceId=%q NoReboot=%q Description=%q; want %q, %q, %q",
					f.Get("InstanceId"), f.Get("NoReboot"), f.Get("Description"), id, tc.wantNoReboot, wantDesc)
			}
			out, err := clients.EC2("us-east-1").DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{b.Images[0].ImageID}})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Images) != 1 || aws.ToString(out.Images[0].Description) != wantDesc ||
				aws.ToString(out.Images[0].Name) != rotation.ImageName(p.Name, id, rot.ID) {
				t.Errorf("image %+v; want name %s and description %q", out.Images, rotation.ImageName(p.Name, id, rot.ID), wantDesc)
			}
		})
	}
}

func TestSnapshot_SharingRefusesImagesEncryptedWithTheAWSManagedKey(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	tags := map[string]string{rotation.TagPolicy: "nightly"}
	managed, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: tags, Volumes: []int{8, 20}, Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	cmk := e.sim.CreateKMSKey(testHome, "alias/shared-images")
	custom, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: tags, Volumes: []int{8}, Encrypted: true, KMSKeyID: cmk})
	if err != nil {
		t.Fatal(err)
	}
	plain := e.run(testHome, 1, nil)[0]
	ids := []string{managed, custom, plain}
	slices.Sort(ids)
	const ou = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"

	e.sim.ResetStats()
	b, err := NewSnapshot(e.clients, Env{Now: e.now}).Handle(ctx, e.batch(testPolicy(t, `,"shareWith":["`+ou+`"]`), ids))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Images {
		switch r.InstanceID {
		case managed:
			if r.State != rotation.StateRefused || r.ImageID != "" || !strings.Contains(r.Error, "AWS managed key aws/ebs") ||
				!strings.Contains(r.Error, "customer managed key") || !strings.Contains(r.Error, "copyTo[].kmsKeyId") {
				t.Errorf("the aws/ebs instance: %+v", r)
			}
		default:
			if r.State != rotation.StatePending || r.ImageID == "" {
				t.Errorf("%s: %+v", r.InstanceID, r)
			}
		}
	}
	if n := e.sim.Stats().FirstAttempts().Calls[testHome]["CreateImage"]; n != 2 {
		t.Errorf("CreateImage called %d times, want 2 (nothing made for the aws/ebs instance)", n)
	}

	// A policy that shares nothing images it: the key is this account's to use.
	b, err = NewSnapshot(e.clients, Env{Now: e.now}).Handle(ctx, e.batch(testPolicy(t, ""), []string{managed}))
	if err != nil || b.Images[0].State != rotation.StatePending {
		t.Fatalf("without sharing: %+v %v", b.Images, err)
	}
}

// A pre script that succeeded longer ago than its timeout no longer holds
// its quiesce (the fsfreeze preset's watchdog has thawed): the image is not
// application-consistent, and onPreFailure decides.
func TestSnapshot_APreScriptWhoseTimeRanOutIsNoQuiesce(t *testing.T) {
	for _, tc := range []struct{ onPreFailure, wantState, wantConsistency string }{
		{rotation.OnPreFailureCrashConsistent, rotation.StatePending, rotation.ConsistencyCrash},
		{rotation.OnPreFailureSkip, rotation.StateRefused, ""},
	} {
		t.Run(tc.onPreFailure, func(t *testing.T) {
			e := newSimEnv(t)
			ids := e.run(testHome, 2, nil)
			p := testPolicy(t, `,"noReboot":true,"scripts":{"preset":"linux-fsfreeze","mountPoints":["/data"],"onPreFailure":"`+tc.onPreFailure+`"}`)
			b := e.batch(p, ids)
			b.Scripts = &ScriptsState{Phase: "pre", Instances: []ScriptInstance{
				{InstanceID: ids[0], Pre: ScriptRun{Status: ScriptOK, Sent: e.now().Add(-30 * time.Second)}},
				{InstanceID: ids[1], Pre: ScriptRun{Status: ScriptOK, Sent: e.now().Add(-2 * time.Minute)}}, // the default timeout is 60 s
			}}
			b, err := e.snapshot().Handle(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			consistency := map[string]string{}
			for _, img := range e.images(testHome) {
				tags := ec2x.TagMap(img.Tags)
				consistency[tags[rotation.TagInstanceID]] = tags[rotation.TagConsistency]
			}
			if b.Images[0].State != rotation.StatePending || consistency[ids[0]] != rotation.ConsistencyApplication {
				t.Errorf("in time: %+v, consistency %q", b.Images[0], consistency[ids[0]])
			}
			if r := b.Images[1]; r.State != tc.wantState || consistency[ids[1]] != tc.wantConsistency {
				t.Errorf("too late: %+v, consistency %q; want %s, %q", r, consistency[ids[1]], tc.wantState, tc.wantConsistency)
			}
			if tc.wantState == rotation.StateRefused && !strings.Contains(b.Images[1].Error, "time ran out") {
				t.Errorf("refusal %q does not say why", b.Images[1].Error)
			}
			// The decision is in the script state, where the report reads it.
			late, _ := b.Scripts.Instance(ids[1])
			if late.Pre.Status != ScriptTimedOut || !strings.Contains(late.Pre.Reason, "time ran out") {
				t.Errorf("script state of the late instance: %+v", late.Pre)
			}
			if in, _ := b.Scripts.Instance(ids[0]); in.Pre.Status != ScriptOK {
				t.Errorf("script state of the instance in time: %+v", in.Pre)
			}
		})
	}
}

// A retried Snapshot (a throttled CreateImage of another instance) runs
// after the quiesce of an instance it imaged on the first attempt ran out:
// that image is adopted, not refused.
func TestSnapshot_ARetryAdoptsTheImageItMadeInTime(t *testing.T) {
	e := newSimEnv(t)
	ids := e.run(testHome, 1, nil)
	p := testPolicy(t, `,"noReboot":true,"scripts":{"preset":"linux-fsfreeze","mountPoints":["/data"],"onPreFailure":"skip"}`)
	in := e.batch(p, ids)
	in.Scripts = &ScriptsState{Phase: "pre", Instances: []ScriptInstance{{InstanceID: ids[0], Pre: ScriptRun{Status: ScriptOK, Sent: e.now()}}}}
	first, err := e.snapshot().Handle(context.Background(), in)
	if err != nil || first.Images[0].ImageID == "" {
		t.Fatalf("first attempt: %v %+v", err, first.Images)
	}
	e.clock.Advance(5 * time.Minute) // past the 60 s quiesce
	again, err := e.snapshot().Handle(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if r := again.Images[0]; r.State != rotation.StatePending || r.ImageID != first.Images[0].ImageID {
		t.Errorf("retry: %+v, want the image %s adopted", r, first.Images[0].ImageID)
	}
}

// A policy that shares and copies: an encrypted instance is imaged only
// when every copy region names its own customer managed key, or its copies
// would carry that region's default EBS key, which consumers cannot use.
func TestSnapshot_ASharedEncryptedImageNeedsACopyKeyInEveryCopyRegion(t *testing.T) {
	e := newSimEnv(t)
	e.sim.CreateKMSKey(testHome, "alias/images")
	copyKey := e.sim.CreateKMSKey("eu-west-1", "alias/images")
	id, err := e.sim.RunInstance(testHome, ec2sim.InstanceSpec{Tags: map[string]string{rotation.TagPolicy: "nightly"}, Encrypted: true, KMSKeyID: "alias/images"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ copyTo, want string }{
		{`[{"region":"eu-west-1"}]`, rotation.StateRefused},
		{`[{"region":"eu-west-1","kmsKeyId":"` + copyKey + `"}]`, rotation.StatePending},
	} {
		p := testPolicy(t, `,"noReboot":true,"shareWith":["444455556666"],"copyTo":`+tc.copyTo)
		b, err := e.snapshot().Handle(context.Background(), e.batch(p, []string{id}))
		if err != nil {
			t.Fatal(err)
		}
		if r := b.Images[0]; r.State != tc.want || (tc.want == rotation.StateRefused && !strings.Contains(r.Error, "no kmsKeyId for eu-west-1")) {
			t.Errorf("copyTo %s: %+v, want %s", tc.copyTo, r, tc.want)
		}
	}
}
