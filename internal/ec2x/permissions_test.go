package ec2x

import (
	"maps"
	"os"
	"slices"
	"testing"
)

// The Makefile builds a Lambda from each directory of functions/ but
// internal/ (their shared code); infra deploys one per step.
func TestSteps_OneFunctionDirectoryEach(t *testing.T) {
	entries, err := os.ReadDir("../../functions")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "internal" {
			dirs = append(dirs, e.Name())
		}
	}
	if want := slices.Sorted(slices.Values(Steps)); !slices.Equal(dirs, want) {
		t.Errorf("functions/ has %v, want a directory per step: %v", dirs, want)
	}
}

func TestPermissions_CoverEveryStep(t *testing.T) {
	got := slices.Sorted(maps.Keys(Permissions))
	if want := slices.Sorted(slices.Values(Steps)); !slices.Equal(got, want) {
		t.Errorf("Permissions has steps %v, want %v", got, want)
	}
}

func TestActions_DerivedFromInterfaces(t *testing.T) {
	tests := []struct {
		step string
		want []string
	}{
		{StepDiscover, []string{"ec2:DescribeImages", "ec2:DescribeInstances"}},
		{StepSnapshot, []string{"ec2:CreateImage", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeVolumes", "kms:DescribeKey"}},
		{StepPoll, []string{"ec2:DeleteSnapshot", "ec2:DeregisterImage", "ec2:DescribeImages", "ec2:DescribeSnapshots"}},
		{StepCopy, []string{"ec2:CopyImage", "ec2:DescribeImages"}},
		{StepPublish, []string{
			"ec2:CreateLaunchTemplateVersion", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeImages", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeLaunchTemplates",
			"ec2:ModifyLaunchTemplate", "ssm:GetParameters", "ssm:PutParameter",
		}},
		{StepRetention, []string{
			"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeLaunchConfigurations",
			"ec2:CreateImageUsageReport", "ec2:DeleteSnapshot", "ec2:DeregisterImage", "ec2:DescribeImageAttribute",
			"ec2:DescribeImageReferences", "ec2:DescribeImageUsageReportEntries", "ec2:DescribeImageUsageReports", "ec2:DescribeImages",
			"ec2:DescribeLaunchTemplateVersions", "ec2:DescribeSnapshots", "ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute",
			"ec2:ModifySnapshotAttribute",
		}},
		{StepReport, []string{}},
		{"no-such-step", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			got := Actions(tt.step)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Actions(%q) = %v, want %v", tt.step, got, tt.want)
			}
		})
	}
}

func TestActions_TagStepCoversSharingAndDeprecation(t *testing.T) {
	got := Actions(StepTag)
	for _, a := range []string{"ec2:CreateTags", "ec2:DeleteTags", "ec2:EnableImageDeprecation",
		"ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "ec2:DescribeImages"} {
		if !slices.Contains(got, a) {
			t.Errorf("Actions(tag) = %v, missing %s", got, a)
		}
	}
	if !slices.IsSorted(got) {
		t.Errorf("Actions(tag) not sorted: %v", got)
	}
}
