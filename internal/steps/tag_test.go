package steps

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// latest returns the images tagged amirotate:latest in region.
func (e *simEnv) latest(region string) []string {
	var out []string
	for _, img := range e.images(region) {
		if ec2x.TagMap(img.Tags)[rotation.TagLatest] == rotation.LatestValue {
			out = append(out, aws.ToString(img.ImageId))
		}
	}
	slices.Sort(out)
	return out
}

func newImages(b Batch, region string) []string {
	var out []string
	for _, r := range b.Images {
		if r.Region == region && r.State == rotation.StateAvailable {
			out = append(out, r.ImageID)
		}
	}
	slices.Sort(out)
	return out
}

func TestTag_MovesLatestToTheNewImagesInEveryRegion(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 3, nil)
	p := copyPolicy(t, "")
	first := e.rotate(ctx, e.batch(p, ids))
	regions := []string{testHome, "eu-west-1", "ap-southeast-2"}
	for _, r := range regions {
		if got, want := e.latest(r), newImages(first, r); len(want) != 3 || !slices.Equal(got, want) {
			t.Fatalf("%s after the first rotation: latest %v, want %v", r, got, want)
		}
	}

	// The next day's rotation.
	e.clock.Advance(24 * time.Hour)
	next := e.batch(p, ids)
	next.Rotation = rotation.NewRotation(e.clock.Now(), rotation.TriggerSchedule, e.clock.Now())
	next.Rotation.Home = testHome
	b, err := e.snapshot().Handle(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	for b.Pending > 0 || b.ToCopy > 0 {
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
	e.sim.ResetStats()
	if b, err = e.tagger().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	st := e.sim.Stats().FirstAttempts()
	for _, r := range regions {
		if got, want := e.latest(r), newImages(b, r); len(want) != 3 || !slices.Equal(got, want) {
			t.Errorf("%s after the second rotation: latest %v, want %v", r, got, want)
		}
		if st.Calls[r]["CreateTags"] != 1 || st.Calls[r]["DeleteTags"] != 1 {
			t.Errorf("%s: CreateTags %d, DeleteTags %d; want one batched call each", r, st.Calls[r]["CreateTags"], st.Calls[r]["DeleteTags"])
		}
	}
}

func TestTag_DeprecatesAndSharesImagesAndSnapshots(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 2, nil)
	b := e.rotate(ctx, e.batch(copyPolicy(t, `,"deprecateAfterDays":14,"shareWith":["111122223333","444455556666"]`), ids))
	for _, r := range b.Images {
		if r.Error != "" {
			t.Errorf("record error: %+v", r)
		}
	}
	wantDeprecation := "2026-12-09T03:00"
	for _, region := range []string{testHome, "eu-west-1", "ap-southeast-2"} {
		client := e.clients.EC2(region)
		for _, img := range e.images(region) {
			if !strings.HasPrefix(aws.ToString(img.DeprecationTime), wantDeprecation) {
				t.Errorf("%s %s deprecation %q, want %s", region, aws.ToString(img.ImageId), aws.ToString(img.DeprecationTime), wantDeprecation)
			}
			attr, err := client.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
				ImageId: img.ImageId, Attribute: types.ImageAttributeNameLaunchPermission})
			if err != nil {
				t.Fatal(err)
			}
			var users []string
			for _, lp := range attr.LaunchPermissions {
				users = append(users, aws.ToString(lp.UserId))
				if lp.Group != "" {
					t.Errorf("image %s made public", aws.ToString(img.ImageId))
				}
			}
			if !containsAll(users, "111122223333", "444455556666") {
				t.Errorf("image %s shared with %v", aws.ToString(img.ImageId), users)
			}
			for _, sn := range ec2x.SnapshotIDs(img) {
				sattr, err := client.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{
					SnapshotId: aws.String(sn), Attribute: types.SnapshotAttributeNameCreateVolumePermission})
				if err != nil {
					t.Fatal(err)
				}
				var su []string
				for _, cv := range sattr.CreateVolumePermissions {
					su = append(su, aws.ToString(cv.UserId))
				}
				if !containsAll(su, "111122223333", "444455556666") {
					t.Errorf("snapshot %s shared with %v", sn, su)
				}
			}
		}
	}
}

func TestTag_PublicOnlyWithAllowPublic(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	b := e.rotate(ctx, e.batch(testPolicy(t, `,"shareWith":["all"],"allowPublic":true`), ids))
	imgs := e.images(testHome)
	attr, err := e.clients.EC2(testHome).DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
		ImageId: imgs[0].ImageId, Attribute: types.ImageAttributeNameLaunchPermission})
	if err != nil {
		t.Fatal(err)
	}
	if len(attr.LaunchPermissions) != 1 || attr.LaunchPermissions[0].Group != types.PermissionGroupAll {
		t.Errorf("launch permissions = %+v, want group all", attr.LaunchPermissions)
	}
	b.Policy.AllowPublic = false
	if typ, msg := lambdaErrorType(t, NewTag(e.clients, Env{Now: e.now}).Handle, b); typ != "InvalidInputError" || !strings.Contains(msg, "allowPublic") {
		t.Errorf("public without allowPublic: errorType %q message %q", typ, msg)
	}
}

func TestTag_ErrorNamesReachTheLambdaResponse(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	b := e.availableSources(ctx, testPolicy(t, ""), e.run(testHome, 1, nil))
	bad := b
	bad.Rotation.ID = "yesterday"
	if typ, msg := lambdaErrorType(t, NewTag(e.clients, Env{Now: e.now}).Handle, bad); typ != "InvalidInputError" || !strings.Contains(msg, "rotation.id") {
		t.Errorf("bad rotation id: errorType %q message %q", typ, msg)
	}
	if typ, _ := lambdaErrorType(t, NewTag(deadClients(t), Env{Now: e.now}).Handle, b); typ != "RetryableError" {
		t.Errorf("failing EC2: errorType %q, want RetryableError", typ)
	}
}

func TestTag_TakesLatestFromADisabledPreviousImage(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	p := testPolicy(t, "")
	first := e.rotate(ctx, e.batch(p, ids))
	old := newImages(first, testHome)[0]
	if _, err := e.clients.EC2(testHome).DisableImage(ctx, &ec2.DisableImageInput{ImageId: aws.String(old)}); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(24 * time.Hour)
	next := e.batch(p, ids)
	next.Rotation = rotation.NewRotation(e.clock.Now(), rotation.TriggerSchedule, e.clock.Now())
	next.Rotation.Home = testHome
	b := e.rotate(ctx, next)

	out, err := e.clients.EC2(testHome).DescribeImages(ctx, &ec2.DescribeImagesInput{
		ImageIds: []string{old}, IncludeDisabled: aws.Bool(true)})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("DescribeImages %s: %v %v", old, out, err)
	}
	if v, ok := ec2x.TagMap(out.Images[0].Tags)[rotation.TagLatest]; ok {
		t.Errorf("disabled previous image %s still tagged %s=%s; the new one is %v", old, rotation.TagLatest, v, newImages(b, testHome))
	}
}

// TestTag_TagsOnlyTheCopysOwnSnapshots: the snapshots tagged are read from
// the copy itself, not from its record: a tagged snapshot no image uses is
// one the orphan sweep deletes, so a record naming someone else's snapshot
// (a hand-made input) must not get it tagged.
func TestTag_TagsOnlyTheCopysOwnSnapshots(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	p := testPolicy(t, `,"copyTo":[{"region":"eu-west-1"}]`)
	b := e.availableSources(ctx, p, ids)
	b, err := e.copier().Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute)
	if b, err = e.poll().Handle(ctx, b); err != nil || b.Pending != 0 {
		t.Fatalf("poll: %v pending %d", err, b.Pending)
	}
	// A person's own snapshot in the copy region, used by no image: left
	// behind by an image of theirs deregistered without its snapshots.
	e.clock.Advance(2 * time.Minute)
	theirImage, theirs := e.foreignImage(ctx, t, "eu-west-1")
	if _, err := e.clients.EC2("eu-west-1").DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(theirImage)}); err != nil {
		t.Fatal(err)
	}
	for i, r := range b.Images {
		if r.Region == "eu-west-1" {
			b.Images[i].SnapshotIDs = append(b.Images[i].SnapshotIDs, theirs)
		}
	}
	if _, err = e.tagger().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, sn := range e.snapshots("eu-west-1") {
		if aws.ToString(sn.SnapshotId) == theirs && len(sn.Tags) > 0 {
			t.Errorf("someone else's snapshot %s got tags %v", theirs, ec2x.TagMap(sn.Tags))
		}
	}
}

func TestTag_SharesOnlyTheImagesOwnSnapshots(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	ids := e.run(testHome, 1, nil)
	p := testPolicy(t, `,"shareWith":["111122223333"]`)
	b := e.availableSources(ctx, p, ids)
	// Someone else's image in the same region: its snapshot must stay
	// private even when a (hand-made) record names it.
	cl := e.clients.EC2(testHome)
	_, theirs := e.foreignImage(ctx, t, testHome)
	b.Images[0].SnapshotIDs = append(b.Images[0].SnapshotIDs, theirs)

	if _, err := e.tagger().Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	sharedWith := func(sn string) []string {
		attr, err := cl.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{
			SnapshotId: aws.String(sn), Attribute: types.SnapshotAttributeNameCreateVolumePermission})
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, cv := range attr.CreateVolumePermissions {
			users = append(users, aws.ToString(cv.UserId))
		}
		return users
	}
	if users := sharedWith(theirs); len(users) > 0 {
		t.Errorf("someone else's snapshot %s shared with %v", theirs, users)
	}
	ours, err := cl.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{b.Images[0].ImageID}})
	if err != nil || len(ours.Images) != 1 {
		t.Fatalf("DescribeImages: %v %v", ours, err)
	}
	for _, sn := range ec2x.SnapshotIDs(ours.Images[0]) {
		if users := sharedWith(sn); !containsAll(users, "111122223333") {
			t.Errorf("the image's own snapshot %s shared with %v", sn, users)
		}
	}
}

// foreignImage makes an image that is not amirotate's (someone's own
// CreateImage in region) and returns it with its first snapshot: what a
// hand-made record might name, and what the steps must never touch.
func (e *simEnv) foreignImage(ctx context.Context, t *testing.T, region string) (imageID, snapshotID string) {
	t.Helper()
	cl := e.clients.EC2(region)
	made, err := cl.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(e.run(region, 1, nil)[0]), Name: aws.String("theirs")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cl.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(made.ImageId)}})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("DescribeImages: %v %v", out, err)
	}
	return aws.ToString(made.ImageId), ec2x.SnapshotIDs(out.Images[0])[0]
}

func TestTag_SharesWithOrganizationsAndOUsIdempotently(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	const (
		org = "arn:aws:organizations::111111111111:organization/o-abcdefghij"
		ou  = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"
	)
	ids := e.run(testHome, 1, nil)
	b := e.batch(testPolicy(t, `,"shareWith":["`+org+`","`+ou+`","111122223333"]`), ids)
	b = e.rotate(ctx, b)
	// The tag step again, as a retry of the state would run it.
	again, err := NewTag(e.clients, Env{Now: e.now}).Handle(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again.Images {
		if r.Error != "" {
			t.Errorf("record error: %+v", r)
		}
	}
	img := e.images(testHome)[0]
	attr, err := e.clients.EC2(testHome).DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
		ImageId: img.ImageId, Attribute: types.ImageAttributeNameLaunchPermission})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, lp := range attr.LaunchPermissions {
		got = append(got, aws.ToString(lp.UserId)+aws.ToString(lp.OrganizationArn)+aws.ToString(lp.OrganizationalUnitArn)+string(lp.Group))
	}
	slices.Sort(got)
	if want := []string{"111122223333", org, ou}; !slices.Equal(got, want) {
		t.Errorf("launch permissions = %v, want %v", got, want)
	}
	for _, sn := range ec2x.SnapshotIDs(img) {
		sattr, err := e.clients.EC2(testHome).DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{
			SnapshotId: aws.String(sn), Attribute: types.SnapshotAttributeNameCreateVolumePermission})
		if err != nil {
			t.Fatal(err)
		}
		if len(sattr.CreateVolumePermissions) != 1 || aws.ToString(sattr.CreateVolumePermissions[0].UserId) != "111122223333" {
			t.Errorf("snapshot %s create-volume permissions = %+v, want the account only", sn, sattr.CreateVolumePermissions)
		}
	}
}
