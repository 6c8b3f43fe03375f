package ec2limits

import "testing"

func TestRequest_BucketsAsDocumented(t *testing.T) {
	tests := []struct {
		action     string
		unfiltered bool
		key        string
		want       Bucket
	}{
		{"DescribeImages", true, "DescribeImages", Bucket{100, 20}},
		{"DescribeLaunchTemplateVersions", false, "DescribeLaunchTemplateVersions", Bucket{100, 20}},
		{"GetConsoleOutput", false, "GetConsoleOutput", Bucket{100, 20}},
		{"DescribeSnapshots", true, "DescribeSnapshots/unfiltered", Bucket{50, 10}},
		{"DescribeSnapshots", false, "DescribeSnapshots", Bucket{100, 20}},
		{"DescribeInstances", true, "DescribeInstances/unfiltered", Bucket{50, 10}},
		{"CreateImage", true, "CreateImage", Bucket{50, 5}},
		{"EnableImageDeprecation", false, "EnableImageDeprecation", Bucket{50, 5}},
		{"DisableImage", false, "DisableImage", Bucket{50, 5}},
		{"CreateKeyPair", false, "CreateKeyPair", Bucket{50, 5}},
		{"CopyImage", false, "CopyImage", Bucket{100, 1}},
		{"CreateTags", false, "CreateTags", Bucket{100, 10}},
		{"DeleteTags", false, "DeleteTags", Bucket{100, 10}},
		{"DeregisterImage", false, "DeregisterImage", Bucket{100, 5}},
		{"DeleteSnapshot", false, "DeleteSnapshot", Bucket{100, 5}},
		{"ModifyLaunchTemplate", false, "ModifyLaunchTemplate", Bucket{100, 5}},
		{"RunInstances", false, "RunInstances", Bucket{5, 2}},
	}
	for _, tt := range tests {
		key, b := Request(tt.action, tt.unfiltered)
		if key != tt.key || b != tt.want {
			t.Errorf("Request(%s, %v) = %s %+v, want %s %+v", tt.action, tt.unfiltered, key, b, tt.key, tt.want)
		}
	}
}

func TestResource_OnlyInstanceCountingActions(t *testing.T) {
	if key, b, ok := Resource("RunInstances"); !ok || key != "RunInstances/instances" || b != (Bucket{1000, 2}) {
		t.Errorf("RunInstances: %s %+v %v", key, b, ok)
	}
	if _, _, ok := Resource("CreateImage"); ok {
		t.Error("CreateImage has a resource bucket")
	}
}
