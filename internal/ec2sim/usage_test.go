package ec2sim

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

const (
	testOrg      = "arn:aws:organizations::111111111111:organization/o-abcdefghij"
	testOU       = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"
	consumerAcct = "222233334444"
)

func TestSharing_OUAndOrganizationLaunchPermissions(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: -1})
	ctx := t.Context()
	inst := e.runInstance(t, "us-east-1", nil)
	img := e.createImage(t, "us-east-1", inst, "shared-img")
	e.sim.JoinOrganization(consumerAcct, testOrg, testOU)

	if _, err := e.sim.ConsumerLaunchTemplate("us-east-1", consumerAcct, img); err == nil {
		t.Fatal("a consumer launched an image not shared with it")
	}
	share := func(op string, perm ec2types.LaunchPermission) {
		t.Helper()
		mods := &ec2types.LaunchPermissionModifications{}
		if op == "add" {
			mods.Add = []ec2types.LaunchPermission{perm}
		} else {
			mods.Remove = []ec2types.LaunchPermission{perm}
		}
		if _, err := e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img), LaunchPermission: mods}); err != nil {
			t.Fatal(err)
		}
	}
	perms := func() []ec2types.LaunchPermission {
		t.Helper()
		out, err := e.ec2.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(img), Attribute: ec2types.ImageAttributeNameLaunchPermission})
		if err != nil {
			t.Fatal(err)
		}
		return out.LaunchPermissions
	}
	ou := ec2types.LaunchPermission{OrganizationalUnitArn: aws.String(testOU)}
	share("add", ou)
	share("add", ou) // idempotent
	if got := perms(); len(got) != 1 || aws.ToString(got[0].OrganizationalUnitArn) != testOU {
		t.Fatalf("launch permissions after adding the OU twice = %+v", got)
	}
	if _, err := e.sim.ConsumerLaunchTemplate("us-east-1", consumerAcct, img); err != nil {
		t.Fatalf("an account of the OU cannot use the image: %v", err)
	}
	share("remove", ou)
	share("remove", ou) // removing what is not there succeeds
	if got := perms(); len(got) != 0 {
		t.Fatalf("launch permissions after removing the OU = %+v", got)
	}
	if _, err := e.sim.ConsumerInstance("us-east-1", consumerAcct, img); err == nil {
		t.Fatal("the image is still launchable after its share was removed")
	}
	share("add", ec2types.LaunchPermission{OrganizationArn: aws.String(testOrg)})
	if got := perms(); len(got) != 1 || aws.ToString(got[0].OrganizationArn) != testOrg {
		t.Fatalf("launch permissions = %+v", got)
	}

	_, err := e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img),
		LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{OrganizationalUnitArn: aws.String("ou-ab12-cdef3456")}}}})
	wantCode(t, err, "InvalidParameterValue", 400)
}

func TestUsageReports_CountConsumersAfterTheirLag(t *testing.T) {
	e := newEnv(t, Options{ImageDelay: time.Minute})
	ctx := t.Context()
	inst := e.runInstance(t, "us-east-1", nil)
	img := e.createImage(t, "us-east-1", inst, "shared-img")
	e.clock.Advance(time.Minute)
	e.sim.JoinOrganization(consumerAcct, testOrg, testOU)
	if _, err := e.ec2.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(img),
		LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{OrganizationalUnitArn: aws.String(testOU)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.ConsumerLaunchTemplate("us-east-1", consumerAcct, img); err != nil {
		t.Fatal(err)
	}
	report := func(token string) string {
		t.Helper()
		out, err := e.ec2.CreateImageUsageReport(ctx, &ec2.CreateImageUsageReportInput{
			ImageId:     aws.String(img),
			ClientToken: aws.String(token),
			ResourceTypes: []ec2types.ImageUsageResourceTypeRequest{{ResourceType: aws.String("ec2:Instance")},
				{ResourceType: aws.String("ec2:LaunchTemplate"), ResourceTypeOptions: []ec2types.ImageUsageResourceTypeOptionRequest{{OptionName: aws.String("version-depth"), OptionValues: []string{"100"}}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ReportId)
	}
	entries := func(id string) []ec2types.ImageUsageReportEntry {
		t.Helper()
		out, err := e.ec2.DescribeImageUsageReportEntries(ctx, &ec2.DescribeImageUsageReportEntriesInput{ReportIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return out.ImageUsageReportEntries
	}
	fresh := report("t1")
	if again := report("t1"); again != fresh {
		t.Fatalf("the same client token made a second report: %s, %s", fresh, again)
	}
	rs, err := e.ec2.DescribeImageUsageReports(ctx, &ec2.DescribeImageUsageReportsInput{ImageIds: []string{img}})
	if err != nil || len(rs.ImageUsageReports) != 1 || aws.ToString(rs.ImageUsageReports[0].State) != "pending" {
		t.Fatalf("reports = %+v, %v", rs, err)
	}
	rt := rs.ImageUsageReports[0].ResourceTypes
	if len(rt) != 2 || len(rt[1].ResourceTypeOptions) != 1 || !slices.Equal(rt[1].ResourceTypeOptions[0].OptionValues, []string{"100"}) {
		t.Fatalf("resource types = %+v", rt)
	}
	e.clock.Advance(time.Minute)
	if got := entries(fresh); len(got) != 0 {
		t.Fatalf("a launch template made minutes before the report is in it: %+v", got)
	}
	e.clock.Advance(3 * 24 * time.Hour)
	old := report("t2")
	e.clock.Advance(time.Minute)
	got := entries(old)
	if len(got) != 1 || aws.ToString(got[0].AccountId) != consumerAcct || aws.ToString(got[0].ResourceType) != "ec2:LaunchTemplate" || aws.ToInt64(got[0].UsageCount) != 1 {
		t.Fatalf("entries = %+v", got)
	}

	e.sim.SetUsageReports(UsageReportBehaviour{Fail: "internal failure"})
	failed := report("t3")
	e.clock.Advance(time.Minute)
	rs, err = e.ec2.DescribeImageUsageReports(ctx, &ec2.DescribeImageUsageReportsInput{ReportIds: []string{failed}})
	if err != nil || aws.ToString(rs.ImageUsageReports[0].State) != "error" || aws.ToString(rs.ImageUsageReports[0].StateReason) != "internal failure" {
		t.Fatalf("failed report = %+v, %v", rs, err)
	}
	e.clock.Advance(31 * 24 * time.Hour)
	rs, err = e.ec2.DescribeImageUsageReports(ctx, &ec2.DescribeImageUsageReportsInput{ImageIds: []string{img}})
	if err != nil || len(rs.ImageUsageReports) != 0 {
		t.Fatalf("reports older than 30 days are still listed: %+v, %v", rs, err)
	}
}
