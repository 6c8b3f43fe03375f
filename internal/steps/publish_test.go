package steps

import (
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/rotation"
)

const publishPolicyJSON = `"retention":{"keep":1},"copyTo":[{"region":"eu-west-1"}],` +
	`"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest","launchTemplates":true}`

const paramA = "/amirotate/nightly/i-0000000a/latest"

func track(instance string) map[string]string { return map[string]string{rotation.TagTrack: instance} }

func (w *rtWorld) runPublish(b Batch) Batch {
	w.t.Helper()
	out, err := w.publisher().Handle(w.ctx, b)
	if err != nil {
		w.t.Fatalf("publish: %v", err)
	}
	return out
}

func pubOf(pubs []Publication, instance, region string) Publication {
	for _, p := range pubs {
		if p.InstanceID == instance && p.Region == region {
			return p
		}
	}
	return Publication{}
}

func TestPublish_PointsTrackedTemplatesAndParameterAtTheNewImage(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	oldHome, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	oldCopy, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1, region: rtCopy, copy: true})
	ltA := w.template(rtHome, "web-a", []string{oldHome}, 1, track("i-0000000a"))
	ltEU := w.template(rtCopy, "web-a-eu", []string{oldCopy}, 1, track("i-0000000a"))
	ltB := w.template(rtHome, "web-b", []string{oldHome}, 1, track("i-0000000b"))
	untracked := w.template(rtHome, "untracked", []string{oldHome}, 1, nil)
	follows := w.template(rtHome, "follows-ssm", []string{"resolve:ssm:" + paramA}, 1, track("i-0000000a"))
	if err := w.sim.PutParameter(rtHome, paramA, oldHome, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	recs := w.rotated("i-0000000a")
	newHome, newCopy := recs[0].ImageID, recs[1].ImageID

	b := w.runPublish(w.batchOf(recs))

	home := pubOf(b.Published, "i-0000000a", rtHome)
	if home.Error != "" || !home.Changed || home.ImageID != newHome || home.SSMParameter != paramA || home.SSMVersion != 2 {
		t.Errorf("home publication %+v", home)
	}
	if !slices.Equal(home.LaunchTemplates, []LaunchTemplateUsed{{ID: ltA, Version: 2}}) {
		t.Errorf("home launch templates %+v; want [%s v2]", home.LaunchTemplates, ltA)
	}
	ver, image, data := w.defaultImage(rtHome, ltA)
	if ver != 2 || image != newHome {
		t.Errorf("%s default version %d launches %s; want version 2 with %s", ltA, ver, image, newHome)
	}
	if data.InstanceType != "t3.micro" {
		t.Errorf("new version lost the source version's instance type: %q", data.InstanceType)
	}
	if v, _ := w.parameter(rtHome, paramA); v != newHome {
		t.Errorf("parameter %s = %s; want %s", paramA, v, newHome)
	}
	out, err := w.clients.SSM(rtHome).GetParameter(w.ctx, &ssm.GetParameterInput{Name: aws.String(paramA)})
	if err != nil || aws.ToString(out.Parameter.DataType) != "aws:ec2:image" {
		t.Errorf("parameter data type %v (%v); want aws:ec2:image", out, err)
	}

	eu := pubOf(b.Published, "i-0000000a", rtCopy)
	if eu.Error != "" || !eu.Changed || eu.ImageID != newCopy {
		t.Errorf("copy-region publication %+v", eu)
	}
	if _, image, _ := w.defaultImage(rtCopy, ltEU); image != newCopy {
		t.Errorf("%s launches %s; want the copy %s", ltEU, image, newCopy)
	}
	if v, ver := w.parameter(rtCopy, paramA); v != newCopy || ver != 1 {
		t.Errorf("parameter in %s = %s (v%d); want %s (v1)", rtCopy, v, ver, newCopy)
	}

	for _, lt := range []string{ltB, untracked} {
		if ver, image, _ := w.defaultImage(rtHome, lt); ver != 1 || image != oldHome {
			t.Errorf("template %s changed to version %d (%s); it does not track i-0000000a", lt, ver, image)
		}
	}
	if ver, image, _ := w.defaultImage(rtHome, follows); ver != 1 || !strings.HasPrefix(image, "resolve:ssm:") {
		t.Errorf("template following the parameter changed to version %d (%s)", ver, image)
	}
}

func TestPublish_SecondRunChangesNothing(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
	b := w.batchOf(w.rotated("i-0000000a"))
	first := w.runPublish(b)
	w.sim.ResetStats()
	second := w.runPublish(b)
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("second publish made changing calls: %v", m)
	}
	for _, p := range second.Published {
		if p.Changed || p.Error != "" {
			t.Errorf("second publish: %+v", p)
		}
	}
	h1, h2 := pubOf(first.Published, "i-0000000a", rtHome), pubOf(second.Published, "i-0000000a", rtHome)
	if h1.SSMVersion != h2.SSMVersion || !slices.Equal(h1.LaunchTemplates, h2.LaunchTemplates) {
		t.Errorf("second run reports %+v; first %+v", h2, h1)
	}
	if ver, _, _ := w.defaultImage(rtHome, lt); ver != 2 {
		t.Errorf("default version %d after two runs; want 2", ver)
	}
}

func TestPublish_DryRunChangesNothing(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
	b := w.batch(map[string]map[string]string{"i-0000000a": {rtHome: rotation.StatePlanned, rtCopy: rotation.StatePlanned}})
	b.Policy.DryRun = true
	w.sim.ResetStats()
	out := w.runPublish(b)
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("dry run made changing calls: %v", m)
	}
	home := pubOf(out.Published, "i-0000000a", rtHome)
	if !home.Changed || home.SSMParameter != paramA || len(home.LaunchTemplates) != 1 || home.LaunchTemplates[0].ID != lt {
		t.Errorf("dry-run publication %+v; want the parameter and %s reported as would change", home, lt)
	}
	if ver, image, _ := w.defaultImage(rtHome, lt); ver != 1 || image != old {
		t.Errorf("dry run changed the template to version %d (%s)", ver, image)
	}
	if v, _ := w.parameter(rtHome, paramA); v != "" {
		t.Errorf("dry run wrote the parameter: %s", v)
	}
}

// TestPublish_OnlyAvailableImages: an instance whose image failed or is
// still pending publishes nothing; its templates keep launching the old
// image.
func TestPublish_OnlyAvailableImages(t *testing.T) {
	for _, state := range []string{rotation.StateFailed, rotation.StatePending, rotation.StateTimedOut, rotation.StateError, rotation.StatePlanned} {
		t.Run(state, func(t *testing.T) {
			w := newRTWorld(t, publishPolicyJSON)
			old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
			lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
			b := w.batch(map[string]map[string]string{"i-0000000a": {rtHome: state}})
			b.Images[0].ImageID = "ami-0fffffffffffffff0"
			out := w.runPublish(b)
			if len(out.Published) > 0 {
				t.Errorf("published %+v for a %s image", out.Published, state)
			}
			if ver, _, _ := w.defaultImage(rtHome, lt); ver != 1 {
				t.Errorf("template moved to version %d", ver)
			}
		})
	}
}

func TestPublish_PaginatesTrackedTemplates(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	var lts []string
	for _, name := range []string{"lt-1", "lt-2", "lt-3"} {
		lts = append(lts, w.template(rtHome, name, []string{old}, 1, track("i-0000000a")))
	}
	w.template(rtHome, "t-other", []string{old}, 1, track("i-00000e0e"))
	recs := w.rotated("i-0000000a")
	p := w.publisher()
	p.pageSize = 1
	w.sim.ResetStats()
	b, err := p.Handle(w.ctx, w.batchOf(recs))
	if err != nil {
		t.Fatal(err)
	}
	if n := w.sim.Stats().Calls[rtHome]["DescribeLaunchTemplates"]; n < 3 {
		t.Errorf("%d DescribeLaunchTemplates calls; want a page per template", n)
	}
	if got := len(pubOf(b.Published, "i-0000000a", rtHome).LaunchTemplates); got != 3 {
		t.Errorf("%d templates updated; want 3", got)
	}
	for _, lt := range lts {
		if _, image, _ := w.defaultImage(rtHome, lt); image != recs[0].ImageID {
			t.Errorf("%s launches %s; want %s", lt, image, recs[0].ImageID)
		}
	}
}

// TestPublish_RetryFinishesAnInterruptedUpdate: the default switch fails
// after the version was made; the rerun reuses that version (same client
// token) instead of making another, and switches the default.
func TestPublish_RetryFinishesAnInterruptedUpdate(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
	b := w.batchOf(w.rotated("i-0000000a"))
	w.inject(ec2sim.Fault{Action: "ModifyLaunchTemplate", Region: rtHome, Code: "UnauthorizedOperation", Count: 1})
	w.inject(ec2sim.Fault{Action: "ssm:PutParameter", Region: rtHome, Code: "AccessDeniedException", Count: 1})
	first := w.runPublish(b)
	home := pubOf(first.Published, "i-0000000a", rtHome)
	if !strings.Contains(home.Error, "UnauthorizedOperation") || !strings.Contains(home.Error, "AccessDeniedException") {
		t.Errorf("first run error %q; want both failures reported", home.Error)
	}
	if ver, _, _ := w.defaultImage(rtHome, lt); ver != 1 {
		t.Fatalf("default moved to %d although the switch failed", ver)
	}
	second := w.runPublish(b)
	if home := pubOf(second.Published, "i-0000000a", rtHome); home.Error != "" || !home.Changed {
		t.Errorf("rerun: %+v", home)
	}
	if ver, image, _ := w.defaultImage(rtHome, lt); ver != 2 || image != b.Images[0].ImageID {
		t.Errorf("default version %d (%s); want 2 with the new image", ver, image)
	}
	out, err := w.ec2(rtHome).DescribeLaunchTemplates(w.ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{lt}})
	if err != nil {
		t.Fatal(err)
	}
	if latest := aws.ToInt64(out.LaunchTemplates[0].LatestVersionNumber); latest != 2 {
		t.Errorf("latest version %d; the rerun made a second version instead of reusing the first", latest)
	}
	if v, _ := w.parameter(rtHome, paramA); v != b.Images[0].ImageID {
		t.Errorf("parameter %s after the rerun", v)
	}
}

func TestPublish_ErrorTypeReachesTheLambdaResponse(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	b := w.batchOf(w.rotated("i-0000000a"))
	b.Policy.Name = ""
	if typ, msg := lambdaResponseErrorType(t, w.publisher().Handle, b); typ != "InvalidInputError" {
		t.Errorf("errorType %q (%s); want InvalidInputError", typ, msg)
	}
}

// TestPublishThenRetention_OldImageGoesOnlyWhenNothingUsesIt runs the two
// steps as the state machine does. Before publish the old image is what
// the template and the parameter launch, so retention keeps it; after
// publish nothing but an old template version names it, and retention in
// the same rotation deletes it, while an image an instance still runs
// stays.
func TestPublishThenRetention_OldImageGoesOnlyWhenNothingUsesIt(t *testing.T) {
	w := newRTWorld(t, `"retention":{"keep":1},"publish":{"ssmParameter":"/amirotate/{policy}/{instanceId}/latest","launchTemplates":true}`)
	old, oldSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	running, runningSnaps := w.mk(img{instance: "i-0000000a", daysAgo: 2})
	w.launch(rtHome, running, false)
	lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
	if err := w.sim.PutParameter(rtHome, paramA, old, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	b := w.batchOf(w.rotated("i-0000000a"))

	// Retention before publish (a dry run, to look without changing).
	look := b
	look.Policy.DryRun = true
	before, err := w.retention().Handle(w.ctx, look)
	if err != nil {
		t.Fatal(err)
	}
	why := scopeOf(before.Retention, "i-0000000a", rtHome).Kept[old]
	if rotation.ReasonCode(why) != rotation.ReasonInUse || !strings.Contains(why, lt) || !strings.Contains(why, paramA) {
		t.Fatalf("before publish the old image is kept as %q; want in use by %s and %s", why, lt, paramA)
	}

	b = w.runPublish(b)
	b = w.runRetention(b)
	w.requireGone(rtHome, old, oldSnaps, "old image after publish moved its template and parameter on")
	w.requireIntact(rtHome, running, runningSnaps, "image a running instance uses")
	if got := deletedIDs(b.Retention); !slices.Equal(got, []string{old}) {
		t.Errorf("deleted %v; want only %s", got, old)
	}
	if ver, image, _ := w.defaultImage(rtHome, lt); ver != 2 || image != b.Images[0].ImageID {
		t.Errorf("template default %d (%s)", ver, image)
	}
}

// TestPublish_MovesOnlyWhatLaunchesTheSameLineage: a template someone tagged
// amirotate:track (a production template hijacked by a tag), a template
// launching another instance's image, and a parameter someone else wrote
// are left as they are, with the reason; a template the policy adopts
// explicitly is moved.
func TestPublish_MovesOnlyWhatLaunchesTheSameLineage(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	foreign, _ := w.mk(img{instance: "i-00000e0e", daysAgo: 3, policy: "other", name: "prod-golden"})
	otherInstance, _ := w.mk(img{instance: "i-0000000b", daysAgo: 1})
	hijacked := w.template(rtHome, "prod", []string{foreign}, 1, track("i-0000000a"))
	crossed := w.template(rtHome, "web-b", []string{otherInstance}, 1, track("i-0000000a"))
	if err := w.sim.PutParameter(rtHome, paramA, foreign, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	recs := w.rotated("i-0000000a")

	home := pubOf(w.runPublish(w.batchOf(recs)).Published, "i-0000000a", rtHome)
	for _, want := range []string{hijacked, crossed, "SSM parameter " + paramA} {
		if !strings.Contains(home.Error, want) {
			t.Errorf("publication error %q does not name %s", home.Error, want)
		}
	}
	for lt, was := range map[string]string{hijacked: foreign, crossed: otherInstance} {
		if ver, image, _ := w.defaultImage(rtHome, lt); ver != 1 || image != was {
			t.Errorf("template %s moved to version %d (%s); it does not launch i-0000000a's lineage", lt, ver, image)
		}
	}
	if v, _ := w.parameter(rtHome, paramA); v != foreign {
		t.Errorf("parameter %s overwritten with %s; someone else's value stays", paramA, v)
	}
	adopted := w.batchOf(recs)
	adopted.Policy.Publish.AdoptLaunchTemplates = []string{hijacked}
	w.runPublish(adopted)
	if ver, image, _ := w.defaultImage(rtHome, hijacked); ver != 2 || image != recs[0].ImageID {
		t.Errorf("adopted template at version %d (%s); want 2 with the new image", ver, image)
	}
}

// TestPublish_NeverPublishesAnImageItCannotProve: a hand-made batch naming
// a foreign image publishes nothing.
func TestPublish_NeverPublishesAnImageItCannotProve(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	foreign, _ := w.mk(img{instance: "i-00000e0e", daysAgo: 3, policy: "other", name: "prod-golden"})
	b := w.batchOf([]rotation.Record{{InstanceID: "i-0000000a", Region: rtHome, ImageID: foreign, State: rotation.StateAvailable}})
	b.Policy.CopyTo = nil
	w.sim.ResetStats()
	out := w.runPublish(b)
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("published a foreign image: %v", m)
	}
	if pub := pubOf(out.Published, "i-0000000a", rtHome); !strings.Contains(pub.Error, "not provably") {
		t.Errorf("publication %+v; want the refusal", pub)
	}
}

// TestPublish_NeverPublishesAnImageMarkedRolledBack: a rerun of a rotation
// rolled back from (or a mark someone wrote on the new image) publishes
// nothing, and the tag step does not mark the image latest: a mark only
// ever publishes less.
func TestPublish_NeverPublishesAnImageMarkedRolledBack(t *testing.T) {
	w := newRTWorld(t, publishPolicyJSON)
	old, _ := w.mk(img{instance: "i-0000000a", daysAgo: 1})
	lt := w.template(rtHome, "web-a", []string{old}, 1, track("i-0000000a"))
	if err := w.sim.PutParameter(rtHome, paramA, old, "aws:ec2:image"); err != nil {
		t.Fatal(err)
	}
	recs := w.rotated("i-0000000a")
	for _, r := range recs {
		if _, err := w.ec2(r.Region).CreateTags(w.ctx, &ec2.CreateTagsInput{Resources: []string{r.ImageID},
			Tags: ec2Tags(map[string]string{rotation.TagRolledBack: w.policy.Name})}); err != nil {
			t.Fatal(err)
		}
	}
	b := w.batchOf(recs)
	w.sim.ResetStats()
	tagged, err := NewTag(w.clients, Env{Now: w.clock.Now}).Handle(w.ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	out := w.runPublish(tagged)
	if m := mutations(w.sim.Stats()); len(m) > 0 {
		t.Errorf("a marked image was published or marked latest: %v", m)
	}
	for _, r := range tagged.Images {
		if !strings.Contains(r.Error, rotation.TagRolledBack) {
			t.Errorf("tag step record %+v; want the refusal naming the mark", r)
		}
	}
	if pub := pubOf(out.Published, "i-0000000a", rtHome); !strings.Contains(pub.Error, rotation.TagRolledBack) || pub.Changed {
		t.Errorf("publication %+v; want the refusal naming the mark", pub)
	}
	if v, _ := w.parameter(rtHome, paramA); v != old {
		t.Errorf("parameter moved to %s", v)
	}
	if _, image, _ := w.defaultImage(rtHome, lt); image != old {
		t.Errorf("template moved to %s", image)
	}
}
