package rotation

import (
	"fmt"
	"testing"
	"time"
)

// fleetInventory is a realistic large inventory: n images of a policy over
// n/10 instances in three regions (sources and copies), ten rotations each,
// some in use, some protected.
func fleetInventory(n int) PlanInput {
	in := PlanInput{
		Policy:     Policy{Name: "nightly", Retention: Retention{Keep: 7, MaxAgeDays: 5}, CopyRetention: &Retention{Keep: 3}},
		Now:        planNow,
		References: map[string][]string{},
	}
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	for i := range n {
		instance := fmt.Sprintf("i-%017x", i/30)
		made := planNow.Add(-time.Duration(i%10) * 24 * time.Hour)
		id := fmt.Sprintf("ami-%017x", i)
		img := Image{
			ID: id, Name: ImageName("nightly", instance, RotationID(made)), Region: regions[(i/10)%3], State: StateAvailable, CreatedAt: made,
			Tags: map[string]string{
				TagCreatedBy: CreatedBy, TagPolicy: "nightly", TagInstanceID: instance, TagRotation: RotationID(made),
			},
			SnapshotIDs: []string{fmt.Sprintf("snap-%017x", i), fmt.Sprintf("snap-%017x", i+n)},
			Sharing:     &Sharing{},
		}
		if img.Region != "us-east-1" {
			img.Tags[TagSourceImage] = "ami-source"
			img.Tags[TagSourceRegion] = "us-east-1"
		}
		if i%97 == 0 {
			in.References[id] = []string{"launch-template lt-1:1"}
		}
		img.DeregistrationProtected = i%101 == 0
		in.Images = append(in.Images, img)
	}
	withNoUsageReports(&in)
	return in
}

func BenchmarkPlanRetention(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		in := fleetInventory(n)
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				PlanRetention(in)
			}
		})
	}
}
