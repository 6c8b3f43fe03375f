package steps

import (
	"fmt"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

// benchWorld seeds 1,000 managed images in the home region: 100 instances
// with 10 daily images each, plus today's, so that keep 3 deletes 800.
func benchWorld(b *testing.B) (*rtWorld, Batch) {
	b.Helper()
	w := newRTWorld(b, `"retention":{"keep":3}`)
	batch := Batch{Policy: w.policy, Rotation: w.rot}
	for i := range 100 {
		inst := fmt.Sprintf("i-%017x", i)
		for d := 1; d <= 10; d++ {
			w.mk(img{instance: inst, daysAgo: d, fast: true})
		}
		id, _ := w.mk(img{instance: inst, fast: true})
		batch.InstanceIDs = append(batch.InstanceIDs, inst)
		batch.Images = append(batch.Images, rotation.Record{InstanceID: inst, Region: rtHome, ImageID: id, State: rotation.StateAvailable})
	}
	return w, batch
}

// BenchmarkRetention_Plan1000Images is the read side of the hot path:
// listing 1,100 images, reading the references of the 800 candidates
// (80 DescribeImageReferences calls, launch templates, Auto Scaling) and
// planning twice, as a dry run does.
func BenchmarkRetention_Plan1000Images(b *testing.B) {
	w, batch := benchWorld(b)
	batch.Policy.DryRun = true
	r := w.retention()
	b.ResetTimer()
	for b.Loop() {
		out, err := r.Handle(w.ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(deletedIDs(out.Retention)); n != 800 {
			b.Fatalf("planned %d deletions; want 800", n)
		}
	}
}

// BenchmarkRetention_Delete1000Images is the whole hot path: plan, then
// deregister 800 images and delete their 1,600 snapshots.
func BenchmarkRetention_Delete1000Images(b *testing.B) {
	for range b.N {
		b.StopTimer()
		w, batch := benchWorld(b)
		r := w.retention()
		b.StartTimer()
		out, err := r.Handle(w.ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(deletedIDs(out.Retention)); n != 800 {
			b.Fatalf("deleted %d; want 800", n)
		}
	}
}
