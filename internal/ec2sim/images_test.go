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

func TestCreateImage_PendingThenAvailable(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := context.Background()
	id := e.runInstance(t, "us-east-1", map[string]string{"Name": "web"}, 100)
	out, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId: aws.String(id), Name: aws.String("amirotate-nightly-" + id + "-20261125T0300Z"), NoReboot: aws.Bool(true),
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeImage, Tags: []ec2types.Tag{{Key: aws.String("amirotate:policy"), Value: aws.String("nightly")}}},
			{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("amirotate:policy"), Value: aws.String("nightly")}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	img := e.image(t, "us-east-1", *out.ImageId)
	if img.State != ec2types.ImageStatePending {
		t.Fatalf("state = %s, want pending", img.State)
	}
	if len(img.BlockDeviceMappings) != 2 || *img.CreationDate != "2026-11-25T03:00:00.000Z" || *img.SourceInstanceId != id {
		t.Fatalf("unexpected image %+v", img)
	}
	if img.Tags[0].Key == nil || *img.Tags[0].Key != "amirotate:policy" {
		t.Fatalf("tags = %+v", img.Tags)
	}
	// 108 GiB: one minute plus one more for the extra 100 GiB.
	e.clock.Advance(time.Minute + 59*time.Second)
	if st := e.image(t, "us-east-1", *out.ImageId).State; st != ec2types.ImageStatePending {
		t.Fatalf("state after 1m59s = %s, want pending", st)
	}
	e.clock.Advance(time.Second)
	if st := e.image(t, "us-east-1", *out.ImageId).State; st != ec2types.ImageStateAvailable {
		t.Fatalf("state after 2m = %s, want available", st)
	}
	snaps, err := e.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:amirotate:policy"), Values: []string{"nightly"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps.Snapshots) != 2 || snaps.Snapshots[0].State != ec2types.SnapshotStateCompleted {
		t.Fatalf("snapshots = %+v", snaps.Snapshots)
	}
}

func TestDescribeImages_PaginatorAndFilters(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := context.Background()
	inst := e.runInstance(t, "us-east-1", nil)
	ids := map[string]bool{}
	for i := 0; i < 23; i++ {
		out, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(inst), Name: aws.String("img-" + string(rune('a'+i))),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImage,
				Tags: []ec2types.Tag{{Key: aws.String("n"), Value: aws.String([]string{"even", "odd"}[i%2])}}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[*out.ImageId] = true
	}
	tests := []struct {
		name    string
		in      ec2.DescribeImagesInput
		want    int
		minPage int
	}{
		{"owner self", ec2.DescribeImagesInput{Owners: []string{"self"}}, 23, 3},
		{"tag filter", ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{{Name: aws.String("tag:n"), Values: []string{"even"}}}}, 12, 2},
		{"wildcard name", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"img-?", "nothing*"}}}}, 23, 3},
		{"star prefix", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"img-[ab]*", "img-c*"}}}}, 1, 1},
		{"escaped star", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{`img-\*`}}}}, 0, 1},
		{"amazon", ec2.DescribeImagesInput{Owners: []string{"amazon"}}, 2, 1},
		{"source instance", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("source-instance-id"), Values: []string{inst}}, {Name: aws.String("state"), Values: []string{"available"}}}}, 23, 3},
		{"tag-key", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"n"}}}}, 23, 3},
		{"everything visible", ec2.DescribeImagesInput{}, 25, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.MaxResults = aws.Int32(10)
			pg := ec2.NewDescribeImagesPaginator(e.ec2, &in)
			got, pages := 0, 0
			for pg.HasMorePages() {
				out, err := pg.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				got += len(out.Images)
				if len(out.Images) > 10 {
					t.Fatalf("page of %d > MaxResults", len(out.Images))
				}
			}
			if got != tc.want || pages < tc.minPage {
				t.Fatalf("got %d images in %d pages, want %d in ≥%d", got, pages, tc.want, tc.minPage)
			}
		})
	}
	if len(ids) != 23 {
		t.Fatalf("ids not unique: %d", len(ids))
	}
}

func TestImageAvailableWaiter_WithDrivenClock(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: 10 * time.Minute})
	inst := e.runInstance(t, "eu-west-1", nil)
	id := e.createImage(t, "eu-west-1", inst, "waiter-image")
	done := make(chan error, 1)
	go func() {
		w := ec2.NewImageAvailableWaiter(e.ec2, func(o *ec2.ImageAvailableWaiterOptions) {
			o.MinDelay, o.MaxDelay = 5*time.Millisecond, 10*time.Millisecond
			o.ClientOptions = append(o.ClientOptions, inRegion("eu-west-1"))
		})
		done <- w.Wait(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{id}}, 30*time.Second)
	}()
	// Drive simulated time while the waiter polls in real time.
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("waiter: %v", err)
			}
			if got := e.sim.Now().Sub(testStart); got < 10*time.Minute {
				t.Fatalf("available after %v of sim time, want ≥ 10m", got)
			}
			return
		case <-time.After(5 * time.Millisecond):
			e.clock.Advance(time.Minute)
		}
	}
}

func TestImageAvailableWaiter_FailedImageStopsWaiter(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	inst := e.runInstance(t, "us-east-1", nil)
	e.sim.FailNextImage("us-east-1", inst, "Snapshot copy failed")
	id := e.createImage(t, "us-east-1", inst, "will-fail")
	e.clock.Advance(time.Hour)
	img := e.image(t, "us-east-1", id)
	if img.State != ec2types.ImageStateFailed || img.StateReason == nil || *img.StateReason.Message != "Snapshot copy failed" || *img.StateReason.Code != "Server.InternalError" {
		t.Fatalf("image = %s %+v", img.State, img.StateReason)
	}
	w := ec2.NewImageAvailableWaiter(e.ec2, func(o *ec2.ImageAvailableWaiterOptions) { o.MinDelay = time.Millisecond })
	if err := w.Wait(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{id}}, time.Second); err == nil {
		t.Fatal("waiter succeeded on a failed image")
	}
	// The next image of the same instance is fine: the rule fired once.
	id2 := e.createImage(t, "us-east-1", inst, "will-work")
	e.clock.Advance(time.Hour)
	if st := e.image(t, "us-east-1", id2).State; st != ec2types.ImageStateAvailable {
		t.Fatalf("second image %s", st)
	}
}

func TestCreateImage_Errors(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	inst := e.runInstance(t, "us-east-1", nil)
	first := e.createImage(t, "us-east-1", inst, "taken-name")
	term := e.runInstance(t, "us-east-1", nil)
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{term}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, instance, ami, code string
		status                    int
		spec                      []ec2types.TagSpecification
		msg                       string
	}{
		{name: "duplicate", instance: inst, ami: "taken-name", code: "InvalidAMIName.Duplicate", status: 400, msg: "AMI name taken-name is already in use by AMI " + first},
		{name: "too short", instance: inst, ami: "ab", code: "InvalidAMIName.Malformed", status: 400},
		{name: "bad char", instance: inst, ami: "name*with*stars", code: "InvalidAMIName.Malformed", status: 400},
		{name: "unknown instance", instance: "i-0123456789abcdef0", ami: "fine-name", code: "InvalidInstanceID.NotFound", status: 400},
		{name: "malformed instance", instance: "i-xyz", ami: "fine-name", code: "InvalidInstanceID.Malformed", status: 400},
		{name: "terminated", instance: term, ami: "fine-name", code: "IncorrectInstanceState", status: 400},
		{name: "bad resource type", instance: inst, ami: "fine-name", code: "InvalidParameterValue", status: 400,
			spec: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}}},
		{name: "reserved tag", instance: inst, ami: "fine-name", code: "InvalidParameterValue", status: 400,
			spec: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeImage, Tags: []ec2types.Tag{{Key: aws.String("aws:x"), Value: aws.String("b")}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(tc.instance), Name: aws.String(tc.ami), TagSpecifications: tc.spec})
			wantCode(t, err, tc.code, tc.status)
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q lacks %q", err, tc.msg)
			}
		})
	}
}

func TestDescribeImages_Errors(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	tests := []struct {
		name string
		in   ec2.DescribeImagesInput
		code string
		msg  string
	}{
		{"not found", ec2.DescribeImagesInput{ImageIds: []string{"ami-0123456789abcdef0"}}, "InvalidAMIID.NotFound", "The image id '[ami-0123456789abcdef0]' does not exist"},
		{"malformed", ec2.DescribeImagesInput{ImageIds: []string{"ami-xyz"}}, "InvalidAMIID.Malformed", `Invalid id: "ami-xyz"`},
		{"bad owner", ec2.DescribeImagesInput{Owners: []string{"someone"}}, "InvalidUserID.Malformed", ""},
		{"bad filter", ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("colour"), Values: []string{"x"}}}}, "InvalidParameterValue", "The filter 'colour' is invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ec2.DescribeImages(ctx, &tc.in)
			wantCode(t, err, tc.code, 400)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q lacks %q", err, tc.msg)
			}
		})
	}
}

func TestDryRun_EveryActionAnswers412(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	inst := e.runInstance(t, "us-east-1", nil)
	checks := map[string]error{}
	_, checks["CreateImage"] = e.ec2.CreateImage(ctx, &ec2.CreateImageInput{DryRun: aws.Bool(true), InstanceId: aws.String(inst), Name: aws.String("x-dry")})
	_, checks["DescribeImages"] = e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{DryRun: aws.Bool(true)})
	_, checks["DeregisterImage"] = e.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{DryRun: aws.Bool(true), ImageId: aws.String("ami-0123456789abcdef0")})
	_, checks["CreateTags"] = e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{DryRun: aws.Bool(true), Resources: []string{inst}, Tags: []ec2types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
	_, checks["CopyImage"] = e.ec2.CopyImage(ctx, &ec2.CopyImageInput{DryRun: aws.Bool(true), SourceImageId: aws.String("ami-0123456789abcdef0"), SourceRegion: aws.String("us-east-1"), Name: aws.String("n-dry")})
	for action, err := range checks {
		t.Run(action, func(t *testing.T) { wantCode(t, err, "DryRunOperation", 412) })
	}
	if out, err := e.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}); err != nil || len(out.Images) != 0 {
		t.Fatalf("dry run created something: %v %v", out, err)
	}
}
