package steps

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// TestSnapshotAudit_CreateImageCarriesNoRebootAndDescription: the snapshot
// handler sends NoReboot exactly as the policy says (true, and EC2's
// default false when the policy leaves it out) and the deterministic
// description, and the description reaches the image.
func TestSnapshotAudit_CreateImageCarriesNoRebootAndDescription(t *testing.T) {
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
	h := NewSnapshot(clients, clock.Now)
	ctx := context.Background()

	for _, tc := range []struct {
		policy, extra, wantNoReboot string
	}{
		{"quiet", `,"noReboot":true`, "true"},
		{"safe", ``, "false"},
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
