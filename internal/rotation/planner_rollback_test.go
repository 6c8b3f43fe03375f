package rotation

import (
	"math/rand/v2"
	"testing"
)

func markedRolledBackTo(rotation string) func(*Image) { return withTag(TagRolledBack, rotation) }

// TestPlan_RolledBackMarkKeepsTheMarkedImageAndItsTarget: after a rollback
// from B to A, keep 1 would delete A (and B once C is newer); while the
// mark stands both stay, and only what the mark does not name goes.
func TestPlan_RolledBackMarkKeepsTheMarkedImageAndItsTarget(t *testing.T) {
	a := image("ami-a", "us-east-1", "i-0000000a", 2)
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-c", "us-east-1", "i-0000000a", 0),
		image("ami-b", "us-east-1", "i-0000000a", 1, markedRolledBackTo(a.Tags[TagRotation])),
		a,
		image("ami-z", "us-east-1", "i-0000000a", 3),
	}})
	expect(t, got, map[string]string{
		"ami-c": ReasonNotOlder,
		"ami-b": ReasonRolledBack,
		"ami-a": ReasonRollbackTarget,
		"ami-z": ReasonExpired,
	})
	if want := "rollback-target: named by the mark on ami-b"; got["ami-a"].Reason != want {
		t.Errorf("reason %q, want %q", got["ami-a"].Reason, want)
	}
}

// TestPlan_RolledBackMarkCannotBeAbused tries marks written by someone
// else: on a foreign image, on another instance's image, in another region,
// with a value that is no rotation. None keeps what the mark names (beyond
// the marked image itself, if it is ours), and none deletes anything.
func TestPlan_RolledBackMarkCannotBeAbused(t *testing.T) {
	z := image("ami-z", "us-east-1", "i-0000000a", 3)
	target := z.Tags[TagRotation]
	got := plan(t, PlanInput{Policy: policyKeep(1, 0), Images: []Image{
		image("ami-new", "us-east-1", "i-0000000a", 1),
		image("ami-y", "us-east-1", "i-0000000a", 2),
		z,
		// A foreign image with amirotate's tags and the mark: not ours.
		image("ami-forged", "us-east-1", "i-0000000a", 1, named("golden"), markedRolledBackTo(target)),
		// Another instance's image naming i-1's rotation.
		image("ami-other", "us-east-1", "i-0000000b", 1, markedRolledBackTo(target)),
		image("ami-other-old", "us-east-1", "i-0000000b", 4),
		// i-1's copy in another region naming the same rotation.
		image("ami-eu", "eu-west-1", "i-0000000a", 1, asCopy, markedRolledBackTo(target)),
		image("ami-eu-old", "eu-west-1", "i-0000000a", 5, asCopy),
		// A mark with no rotation for value.
		image("ami-w", "us-east-1", "i-0000000c", 1, withTag(TagRolledBack, "yesterday")),
		image("ami-w-old", "us-east-1", "i-0000000c", 2),
	}})
	expect(t, got, map[string]string{
		"ami-new":       ReasonNewest,
		"ami-y":         ReasonExpired,
		"ami-z":         ReasonExpired, // named only by marks that do not count
		"ami-forged":    ReasonNotManaged,
		"ami-other":     ReasonRolledBack,
		"ami-other-old": ReasonExpired,
		"ami-eu":        ReasonRolledBack,
		"ami-eu-old":    ReasonExpired,
		"ami-w":         ReasonRolledBack,
		"ami-w-old":     ReasonExpired,
	})
}

// TestPlan_RolledBackMarksOnlyEverKeepMore marks random images of random
// inventories with random values: no image the plan kept before is
// deleted after, whatever is marked (the newest one included).
func TestPlan_RolledBackMarksOnlyEverKeepMore(t *testing.T) {
	marksOnlyEverKeepMore(t, rand.New(rand.NewPCG(18, 2)), func(rng *rand.Rand, img Image, in []Image) {
		other := in[rng.IntN(len(in))]
		values := []string{other.Tags[TagRotation], "", "not-a-rotation", img.Tags[TagRotation]}
		img.Tags[TagRolledBack] = values[rng.IntN(len(values))]
	})
}

// marksOnlyEverKeepMore marks a third of the images of 500 random
// inventories with mark and fails if any image the plan kept before is
// deleted after.
func marksOnlyEverKeepMore(t *testing.T, rng *rand.Rand, mark func(rng *rand.Rand, img Image, in []Image)) {
	t.Helper()
	for range 500 {
		in := randomInventory(rng)
		if len(in.Images) == 0 {
			continue
		}
		before := map[string]bool{}
		for _, d := range PlanRetention(in) {
			before[d.ImageID] = d.Delete
		}
		marked := in
		marked.Images = make([]Image, len(in.Images))
		for i, img := range in.Images {
			img.Tags = clone(img.Tags)
			if rng.IntN(3) == 0 {
				mark(rng, img, in.Images)
			}
			marked.Images[i] = img
		}
		for _, d := range PlanRetention(marked) {
			if d.Delete && !before[d.ImageID] {
				t.Fatalf("marking made %s deletable (%s)", d.ImageID, d.Reason)
			}
		}
	}
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
