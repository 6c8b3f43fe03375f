package ec2sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func availableImage(t *testing.T, e *env, region, name string, tags map[string]string) (image, instance string) {
	t.Helper()
	inst := e.runInstance(t, region, nil)
	in := &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String(name)}
	if len(tags) > 0 {
		ts := ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeImage}
		for k, v := range tags {
			ts.Tags = append(ts.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		in.TagSpecifications = []ec2types.TagSpecification{ts}
	}
	out, err := e.ec2.CreateImage(context.Background(), in, inRegion(region))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	return *out.ImageId, inst
}

func TestCopyImage_IdempotentTokenAndNewSnapshots(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	src, _ := availableImage(t, e, "us-east-1", "source-image", map[string]string{"Team": "a", "amirotate:policy": "p"})
	srcImg := e.image(t, "us-east-1", src)
	copyIn := func(token, name string) *ec2.CopyImageInput {
		return &ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("us-east-1"), Name: aws.String(name),
			ClientToken: aws.String(token), CopyImageTags: aws.Bool(true), Encrypted: aws.Bool(true), KmsKeyId: aws.String("alias/ami-dr"),
			TagSpecifications: []ec2types.TagSpecification{
				{ResourceType: ec2types.ResourceTypeImage, Tags: []ec2types.Tag{{Key: aws.String("amirotate:source-image"), Value: aws.String(src)}}},
				{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("amirotate:source-image"), Value: aws.String(src)}}},
			}}
	}
	first, err := e.ec2.CopyImage(ctx, copyIn("tok-1", "source-image"), inRegion("eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.ec2.CopyImage(ctx, copyIn("tok-1", "source-image"), inRegion("eu-west-1"))
	if err != nil || *again.ImageId != *first.ImageId {
		t.Fatalf("replay: %v %v, want %s", again, err, *first.ImageId)
	}
	_, err = e.ec2.CopyImage(ctx, copyIn("tok-1", "other-name"), inRegion("eu-west-1"))
	wantCode(t, err, "IdempotentParameterMismatch", 400)
	_, err = e.ec2.CopyImage(ctx, copyIn("tok-2", "source-image"), inRegion("eu-west-1"))
	wantCode(t, err, "InvalidAMIName.Duplicate", 400)

	cp := e.image(t, "eu-west-1", *first.ImageId)
	if cp.State != ec2types.ImageStatePending || *cp.SourceImageId != src || *cp.SourceImageRegion != "us-east-1" {
		t.Fatalf("copy = %+v", cp)
	}
	tags := map[string]string{}
	for _, tg := range cp.Tags {
		tags[*tg.Key] = *tg.Value
	}
	if tags["Team"] != "a" || tags["amirotate:source-image"] != src || tags["amirotate:policy"] != "p" {
		t.Fatalf("copy tags = %v", tags)
	}
	ebs := cp.BlockDeviceMappings[0].Ebs
	if *ebs.SnapshotId == *srcImg.BlockDeviceMappings[0].Ebs.SnapshotId || !*ebs.Encrypted || !strings.HasSuffix(*ebs.KmsKeyId, ":alias/ami-dr") {
		t.Fatalf("copy ebs = %+v", ebs)
	}
	snaps, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{*ebs.SnapshotId}}, inRegion("eu-west-1"))
	if err != nil || len(snaps.Snapshots) != 1 || *snaps.Snapshots[0].Tags[0].Value != src {
		t.Fatalf("copy snapshot: %+v %v", snaps, err)
	}
	e.clock.Advance(time.Hour)
	if st := e.image(t, "eu-west-1", *first.ImageId).State; st != ec2types.ImageStateAvailable {
		t.Fatalf("copy state after 1h: %s", st)
	}
}

func TestCopyImage_Errors(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	src, inst := availableImage(t, e, "us-east-1", "source-image", nil)
	pending := e.createImage(t, "us-east-1", inst, "pending-image")
	tests := []struct {
		name string
		in   ec2.CopyImageInput
		code string
	}{
		{"kms without encrypted", ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("us-east-1"), Name: aws.String("copy-1"), KmsKeyId: aws.String("alias/x")}, "InvalidParameterDependency"},
		{"unknown source", ec2.CopyImageInput{SourceImageId: aws.String("ami-0123456789abcdef0"), SourceRegion: aws.String("us-east-1"), Name: aws.String("copy-2")}, "InvalidAMIID.NotFound"},
		{"bad region", ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("mars-1"), Name: aws.String("copy-3")}, "InvalidRegion"},
		{"pending source", ec2.CopyImageInput{SourceImageId: aws.String(pending), SourceRegion: aws.String("us-east-1"), Name: aws.String("copy-4")}, "IncorrectState"},
		{"bad name", ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("us-east-1"), Name: aws.String("!")}, "InvalidAMIName.Malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ec2.CopyImage(ctx, &tc.in, inRegion("ap-southeast-2"))
			wantCode(t, err, tc.code, 400)
		})
	}
}

func TestCopyImage_ConcurrentCopyLimit(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute, CopyDelay: 10 * time.Minute, MaxConcurrentCopies: 2})
	ctx := context.Background()
	src, _ := availableImage(t, e, "us-east-1", "source-image", nil)
	cp := func(name string) error {
		_, err := e.ec2.CopyImage(ctx, &ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("us-east-1"), Name: aws.String(name)}, inRegion("eu-west-1"))
		return err
	}
	for _, n := range []string{"copy-1", "copy-2"} {
		if err := cp(n); err != nil {
			t.Fatal(err)
		}
	}
	err := cp("copy-3")
	wantCode(t, err, "ResourceLimitExceeded", 400)
	if !strings.Contains(err.Error(), "maximum number of concurrent AMI copies") {
		t.Fatalf("message: %v", err)
	}
	// Another destination has its own limit.
	if _, err := e.ec2.CopyImage(ctx, &ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String("us-east-1"), Name: aws.String("copy-3")}, inRegion("ap-southeast-2")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(11 * time.Minute)
	if err := cp("copy-3"); err != nil {
		t.Fatalf("after copies completed: %v", err)
	}
}

func TestDeregisterImage_SharedSnapshotIsSkipped(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	first, _ := availableImage(t, e, "us-east-1", "first-image", nil)
	snap := *e.image(t, "us-east-1", first).BlockDeviceMappings[0].Ebs.SnapshotId
	reg, err := e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("second-image"), RootDeviceName: aws.String("/dev/xvda"),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snap)}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
	wantCode(t, err, "InvalidSnapshot.InUse", 400)
	if !strings.Contains(err.Error(), "The snapshot "+snap+" is currently in use by ami-") {
		t.Fatalf("message: %v", err)
	}
	out, err := e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(first), DeleteAssociatedSnapshots: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.DeleteSnapshotResults) != 1 || *out.DeleteSnapshotResults[0].SnapshotId != snap || out.DeleteSnapshotResults[0].ReturnCode != ec2types.SnapshotReturnCodesWarnSkipped {
		t.Fatalf("results = %+v", out.DeleteSnapshotResults)
	}
	_, err = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{first}})
	wantCode(t, err, "InvalidAMIID.NotFound", 400)
	// Now only the second image uses it: deregistering that deletes it.
	out, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: reg.ImageId, DeleteAssociatedSnapshots: aws.Bool(true)})
	if err != nil || out.DeleteSnapshotResults[0].ReturnCode != ec2types.SnapshotReturnCodesSuccess {
		t.Fatalf("second deregister: %+v %v", out, err)
	}
	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)})
	wantCode(t, err, "InvalidSnapshot.NotFound", 400)
	_, err = e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String("snap-1")})
	wantCode(t, err, "InvalidSnapshotID.Malformed", 400)
}

func TestDeregisterImage_KeepsSnapshotsByDefaultAndHonoursProtection(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	img, _ := availableImage(t, e, "us-east-1", "protected-image", nil)
	snap := *e.image(t, "us-east-1", img).BlockDeviceMappings[0].Ebs.SnapshotId
	if _, err := e.ec2.EnableImageDeregistrationProtection(ctx, &ec2.EnableImageDeregistrationProtectionInput{ImageId: aws.String(img), WithCooldown: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(img)})
	wantCode(t, err, "OperationNotPermitted", 400)
	if _, err := e.ec2.DisableImageDeregistrationProtection(ctx, &ec2.DisableImageDeregistrationProtectionInput{ImageId: aws.String(img)}); err != nil {
		t.Fatal(err)
	}
	if p := *e.image(t, "us-east-1", img).DeregistrationProtection; !strings.HasPrefix(p, "disabled-until ") {
		t.Fatalf("protection = %q", p)
	}
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(img)})
	wantCode(t, err, "OperationNotPermitted", 400)
	e.clock.Advance(24 * time.Hour)
	out, err := e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(img)})
	if err != nil || len(out.DeleteSnapshotResults) != 0 {
		t.Fatalf("deregister: %+v %v", out, err)
	}
	if _, err := e.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)}); err != nil {
		t.Fatalf("snapshot should be kept and deletable: %v", err)
	}
	_, err = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(BaseImageID("us-east-1"))})
	wantCode(t, err, "AuthFailure", 0)
}

func TestImageLifecycle_DeprecationDisableAndSharing(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	img, _ := availableImage(t, e, "us-east-1", "lifecycle-image", nil)
	at := testStart.Add(14 * 24 * time.Hour)
	if _, err := e.ec2.EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{ImageId: aws.String(img), DeprecateAt: aws.Time(at)}); err != nil {
		t.Fatal(err)
	}
	if d := *e.image(t, "us-east-1", img).DeprecationTime; d != "2026-12-09T03:00:00.000Z" {
		t.Fatalf("deprecationTime = %s", d)
	}
	_, err := e.ec2.EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{ImageId: aws.String(img), DeprecateAt: aws.Time(testStart.Add(-time.Hour))})
	wantCode(t, err, "InvalidParameterValue", 400)
	e.clock.Advance(30 * 24 * time.Hour)
	// The owner still sees its deprecated image.
	if out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}); err != nil || len(out.Images) != 1 {
		t.Fatalf("owner view: %v %v", out, err)
	}
	for _, op := range []ec2.ModifyImageAttributeInput{
		{ImageId: aws.String(img), LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String("111122223333")}}}},
		{ImageId: aws.String(img), Attribute: aws.String("launchPermission"), OperationType: ec2types.OperationTypeAdd, UserIds: []string{"444455556666"}},
		{ImageId: aws.String(img), LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{Group: ec2types.PermissionGroupAll}}}},
	} {
		if _, err := e.ec2.ModifyImageAttribute(ctx, &op); err != nil {
			t.Fatal(err)
		}
	}
	attr, err := e.ec2.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(img), Attribute: ec2types.ImageAttributeNameLaunchPermission})
	if err != nil || len(attr.LaunchPermissions) != 3 {
		t.Fatalf("launch permissions = %+v %v", attr, err)
	}
	if !*e.image(t, "us-east-1", img).Public {
		t.Fatal("image not public after group all")
	}
	_, err = e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img), LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String("12")}}}})
	wantCode(t, err, "InvalidAMIAttributeItemValue", 400)
	if _, err := e.ec2.DisableImage(ctx, &ec2.DisableImageInput{ImageId: aws.String(img)}); err != nil {
		t.Fatal(err)
	}
	if out, _ := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}); len(out.Images) != 0 {
		t.Fatal("disabled image listed without IncludeDisabled")
	}
	out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, IncludeDisabled: aws.Bool(true)})
	if err != nil || len(out.Images) != 1 || out.Images[0].State != ec2types.ImageStateDisabled || *out.Images[0].Public {
		t.Fatalf("disabled view: %+v %v", out, err)
	}
	if _, err := e.ec2.EnableImage(ctx, &ec2.EnableImageInput{ImageId: aws.String(img)}); err != nil {
		t.Fatal(err)
	}
	attr, _ = e.ec2.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(img), Attribute: ec2types.ImageAttributeNameLaunchPermission})
	if len(attr.LaunchPermissions) != 0 {
		t.Fatalf("shares restored after enable: %+v", attr.LaunchPermissions)
	}
	snap := *e.image(t, "us-east-1", img).BlockDeviceMappings[0].Ebs.SnapshotId
	if _, err := e.ec2.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{SnapshotId: aws.String(snap), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission,
		CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: []ec2types.CreateVolumePermission{{UserId: aws.String("111122223333")}}}}); err != nil {
		t.Fatal(err)
	}
	sa, err := e.ec2.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(snap), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
	if err != nil || len(sa.CreateVolumePermissions) != 1 || *sa.CreateVolumePermissions[0].UserId != "111122223333" {
		t.Fatalf("snapshot attribute: %+v %v", sa, err)
	}
}
