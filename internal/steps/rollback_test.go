package steps

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// lineageImage makes the instance's image of the rotation n days before
// rtStart in region (a copy outside the home region), named as amirotate
// names it, so that source and copies share their rotation.
func (w *rtWorld) lineageImage(region, instance string, n int) string {
	w.t.Helper()
	rot := rotation.RotationID(rtStart.AddDate(0, 0, -n))
	id, _ := w.mk(img{region: region, instance: instance, copy: region != rtHome,
		tags: map[string]string{rotation.TagRotation: rot}, name: rotation.ImageName(w.policy.Name, instance, rot)})
	return id
}

func (w *rtWorld) rollback(in RollbackIn) (RollbackOut, error) {
	w.t.Helper()
	in.Policy, in.InstanceID = w.policy, "i-0000000a"
	return NewRollback(w.clients, Env{Now: w.clock.Now}).Handle(w.ctx, in)
}

// TestRollback_OneRotationInEveryRegion: a rollback goes back to the same
// rotation in every region or refuses, naming the region that lacks it;
// --region narrows it; --to skips an image (both newer ones are marked with
// its rotation), and a rollback without --to then finds it done.
func TestRollback_OneRotationInEveryRegion(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":3},"copyTo":[{"region":"eu-west-1"}],"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest"}`)
	const inst = "i-0000000a"
	z := map[string]string{rtHome: w.lineageImage(rtHome, inst, 3), rtCopy: w.lineageImage(rtCopy, inst, 3)}
	a := w.lineageImage(rtHome, inst, 2) // its copy never became available
	b := map[string]string{rtHome: w.lineageImage(rtHome, inst, 1), rtCopy: w.lineageImage(rtCopy, inst, 1)}

	w.sim.ResetStats()
	_, err := w.rollback(RollbackIn{})
	var refused RollbackRefused
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "no available image of rotation "+rotation.RotationID(rtStart.AddDate(0, 0, -2))+" in "+rtCopy) {
		t.Fatalf("error %v; want the refusal naming %s", err, rtCopy)
	}
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("a refused rollback changed %v", m)
	}

	out, err := w.rollback(RollbackIn{Regions: []string{rtHome}, DryRun: true})
	if err != nil || len(out.Regions) != 1 || out.Regions[0].ImageID != a || !slices.Equal(out.Regions[0].Marked, []string{b[rtHome]}) {
		t.Fatalf("rollback of %s only: %v %+v", rtHome, err, out)
	}

	to := rotation.RotationID(rtStart.AddDate(0, 0, -3))
	out, err = w.rollback(RollbackIn{To: z[rtHome]})
	if err != nil || out.Failed || out.ToRotation != to {
		t.Fatalf("rollback --to %s: %v %+v", z[rtHome], err, out)
	}
	for _, r := range out.Regions {
		if r.ImageID != z[r.Region] {
			t.Errorf("%s: rolled back to %s, want %s", r.Region, r.ImageID, z[r.Region])
		}
		if v, _ := w.parameter(r.Region, "/amirotate/nightly/"+inst+"/latest"); v != z[r.Region] {
			t.Errorf("%s: parameter %s, want %s", r.Region, v, z[r.Region])
		}
	}
	for region, ids := range map[string][]string{rtHome: {a, b[rtHome]}, rtCopy: {b[rtCopy]}} {
		for _, id := range ids {
			if got := ec2TagValue(w.describe(region, id), rotation.TagRolledBack); got != to {
				t.Errorf("%s %s marked %q, want %s", region, id, got, to)
			}
		}
	}

	w.sim.ResetStats()
	out, err = w.rollback(RollbackIn{})
	if err != nil || out.Changed || out.ToRotation != to {
		t.Errorf("rollback after --to: %v %+v; want it found done", err, out)
	}
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("the repeated rollback changed %v", m)
	}
	// The image rolled back to is never one that is marked itself.
	if _, err := w.rollback(RollbackIn{To: a}); !errors.As(err, &refused) || !strings.Contains(err.Error(), "is itself marked") {
		t.Errorf("rollback --to a marked image: %v", err)
	}
}

func ec2TagValue(im *types.Image, key string) string {
	if im == nil {
		return ""
	}
	return ec2x.TagMap(im.Tags)[key]
}

// TestRollback_NeverToAnImageThatFailedVerification: an image that failed
// its verification was never published: a rollback skips its rotation, and
// refuses it when named.
func TestRollback_NeverToAnImageThatFailedVerification(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":3},"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest"}`)
	const inst = "i-0000000a"
	good := w.lineageImage(rtHome, inst, 3)
	bad := w.lineageImage(rtHome, inst, 2)
	if _, err := w.ec2(rtHome).CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{bad},
		Tags: ec2Tags(map[string]string{rotation.TagVerification: rotation.VerificationFailed})}); err != nil {
		t.Fatal(err)
	}
	w.lineageImage(rtHome, inst, 1)

	out, err := w.rollback(RollbackIn{DryRun: true})
	if err != nil || len(out.Regions) != 1 || out.Regions[0].ImageID != good {
		t.Fatalf("rollback: %v %+v; want %s, skipping the rejected %s", err, out, good, bad)
	}
	var refused RollbackRefused
	if _, err := w.rollback(RollbackIn{To: bad}); !errors.As(err, &refused) || !strings.Contains(err.Error(), "failed its verification") {
		t.Errorf("rollback --to the rejected image: %v", err)
	}
}
