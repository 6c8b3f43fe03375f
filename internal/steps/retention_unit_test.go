package steps

import (
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/rotation"
)

func TestRetention_DescribesReferencesForPeople(t *testing.T) {
	cases := []struct {
		typ  types.ImageReferenceResourceType
		arn  string
		want string
	}{
		{types.ImageReferenceResourceTypeEc2Instance, "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0", "instance i-0123456789abcdef0"},
		{types.ImageReferenceResourceTypeEc2LaunchTemplate, "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-0abc", "launch-template lt-0abc"},
		{types.ImageReferenceResourceTypeSsmParameter, "arn:aws:ssm:us-east-1:123456789012:parameter/amirotate/web/i-1/latest", "ssm-parameter /amirotate/web/i-1/latest"},
		{types.ImageReferenceResourceTypeImageBuilderImageRecipe, "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0", "imagebuilder:ImageRecipe arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0"},
		{"ec2:SomethingNew", "", "ec2:SomethingNew"},
	}
	for _, tc := range cases {
		if got := describeReference(types.ImageReference{ResourceType: tc.typ, Arn: aws.String(tc.arn)}); got != tc.want {
			t.Errorf("%s %s: %q; want %q", tc.typ, tc.arn, got, tc.want)
		}
	}
}

// TestRetention_ReadsDeregistrationProtectionConservatively: every value
// but "disabled" (and none) protects, including a cooldown still running.
func TestRetention_ReadsDeregistrationProtectionConservatively(t *testing.T) {
	for value, want := range map[string]bool{
		"":                                    false,
		"disabled":                            false,
		"enabled":                             true,
		"enabled-with-cooldown":               true,
		"disabled-until 2026-11-26T03:00:00Z": true,
	} {
		im := toImage(types.Image{ImageId: aws.String("ami-1"), DeregistrationProtection: aws.String(value)}, rtHome)
		if value == "" {
			im = toImage(types.Image{ImageId: aws.String("ami-1")}, rtHome)
		}
		if im.DeregistrationProtected != want {
			t.Errorf("deregistrationProtection %q: protected=%v; want %v", value, im.DeregistrationProtected, want)
		}
	}
}

// TestRetention_BatchScope: which instances a batch may prune and which it
// holds.
func TestRetention_BatchScope(t *testing.T) {
	p := rotation.Policy{Name: "p", CopyTo: []rotation.CopyTarget{{Region: "eu-west-1"}}}
	rec := func(inst, region, state string) rotation.Record {
		return rotation.Record{InstanceID: inst, Region: region, State: state}
	}
	b := Batch{Policy: p, Images: []rotation.Record{
		rec("i-000000c0", rtHome, rotation.StateAvailable), rec("i-000000c0", "eu-west-1", rotation.StateAvailable),
		rec("i-00000c0b", rtHome, rotation.StateAvailable),
		rec("i-00c0f1a1", rtHome, rotation.StateAvailable), rec("i-00c0f1a1", "eu-west-1", rotation.StateFailed),
		rec("i-0000d1ed", rtHome, rotation.StateTimedOut),
		rec("i-00000b1a", rtHome, rotation.StatePlanned), rec("i-00000b1a", "eu-west-1", rotation.StatePlanned),
		rec("i-00000ef0", rtHome, rotation.StateRefused),
	}}
	scope, hold, planned := batchScope(b, rtHome)
	for inst, want := range map[string]bool{"i-000000c0": true, "i-00000c0b": false, "i-00c0f1a1": true, "i-0000d1ed": true, "i-00000b1a": false, "i-00000ef0": false} {
		if scope[inst] != want {
			t.Errorf("%s in scope: %v; want %v", inst, scope[inst], want)
		}
	}
	for inst, want := range map[string]bool{"i-000000c0": false, "i-00000c0b": false, "i-00c0f1a1": true, "i-0000d1ed": true, "i-00000b1a": false, "i-00000ef0": false} {
		if _, held := hold[inst]; held != want {
			t.Errorf("%s held: %v; want %v", inst, held, want)
		}
	}
	if len(planned) != 0 {
		t.Errorf("planned %v outside a dry run", planned)
	}
	b.Policy.DryRun = true
	scope, _, planned = batchScope(b, rtHome)
	if !scope["i-00000b1a"] || len(planned) != 2 {
		t.Errorf("dry run: i-planned in scope %v, planned %v; want in scope with 2 stand-ins", scope["i-00000b1a"], planned)
	}
}

// TestRetention_ReportFitsStepFunctionsPayload: a batch of 100 instances
// in four regions with keep 7 stays under the budget by counting the
// routine kept images instead of listing them; everything else stays.
func TestRetention_ReportFitsStepFunctionsPayload(t *testing.T) {
	b := Batch{Policy: rotation.Policy{Name: "nightly"}}
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"}
	n := 0
	id := func() string { n++; return fmt.Sprintf("ami-%017x", n) }
	for i := range 100 {
		inst := fmt.Sprintf("i-%017x", i)
		for _, region := range regions {
			b.Images = append(b.Images, rotation.Record{InstanceID: inst, Region: region, ImageID: id(), Name: "amirotate-nightly-" + inst + "-20261125T0300Z", State: rotation.StateAvailable})
			rep := rotation.ScopeReport{InstanceID: inst, Region: region, Kept: map[string]string{}, Deleted: []string{id()}, SnapshotsDeleted: 2}
			rep.Kept[id()] = rotation.ReasonNewest
			for range 6 {
				rep.Kept[id()] = rotation.ReasonWithinKeep
			}
			rep.Kept[id()] = rotation.ReasonInUse + ": instance i-0123456789abcdef0, launch-template lt-0123456789abcdef0 version 3 (default)"
			b.Retention = append(b.Retention, rep)
			b.Published = append(b.Published, Publication{InstanceID: inst, Region: region, ImageID: id(), SSMParameter: "/amirotate/nightly/" + inst + "/latest", SSMVersion: 12, Changed: true})
		}
	}
	if jsonSize(b) <= batchBudget {
		t.Fatalf("test batch is only %d bytes; it must exceed the budget", jsonSize(b))
	}
	fitReports(b.Retention, batchBudget, func() int { return jsonSize(b) })
	if size := jsonSize(b); size > 256<<10 {
		t.Errorf("batch is %d bytes after fitting; Step Functions allows %d", size, 256<<10)
	}
	for _, rep := range b.Retention {
		if rep.KeptByRule != 7 || len(rep.Kept) != 1 || len(rep.Deleted) != 1 {
			t.Fatalf("report %+v; want 7 counted, the in-use image listed, the deletion listed", rep)
		}
	}
}

func TestWithoutMoved_DropsTheMovedResourcesOnly(t *testing.T) {
	refs := []string{"instance i-1", "launch-template lt-1", "launch-template lt-1 version 3 (default)",
		"launch-template lt-12 version 1 (default)", "ssm-parameter /a/i-1/latest", "ssm-parameter /a/i-1/latest2"}
	got := withoutMoved(refs, []string{"launch-template lt-1", "ssm-parameter /a/i-1/latest"})
	want := []string{"instance i-1", "launch-template lt-12 version 1 (default)", "ssm-parameter /a/i-1/latest2"}
	if !slices.Equal(got, want) {
		t.Errorf("withoutMoved = %q, want %q", got, want)
	}
	if len(refs) != 6 {
		t.Error("withoutMoved changed its input")
	}
}
