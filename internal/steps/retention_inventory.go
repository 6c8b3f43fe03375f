package steps

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Inventory is a policy's images in every region of the policy and what the
// next rotation's retention would do with each: the retention step's own
// listing, references and plan, with nothing deleted.
type Inventory struct {
	Policy string    `json:"policy"`
	At     time.Time `json:"at"`
	// Images are the policy's provable images (rotation.Unproven), sorted
	// by region, instance and rotation (newest first).
	Images []InventoryImage `json:"images"`
	// LookAlikes carry amirotate's tags for this policy but are not
	// provably its images: retention never touches them.
	LookAlikes []InventoryImage `json:"lookAlikes"`
	Totals     InventoryTotals  `json:"totals"`
}

// InventoryImage is one image and its decision.
type InventoryImage struct {
	InstanceID string   `json:"instanceId"`
	Region     string   `json:"region"`
	ImageID    string   `json:"imageId"`
	Name       string   `json:"name"`
	Rotation   string   `json:"rotation,omitempty"`
	Copy       bool     `json:"copy,omitempty"`
	AgeDays    float64  `json:"ageDays"`
	State      string   `json:"state"`
	Snapshots  []string `json:"snapshotIds,omitempty"`
	SizeGiB    int      `json:"sizeGiB"`
	References []string `json:"references,omitempty"`
	// Delete says whether the next rotation deletes the image; Reason why
	// (the retention report's reason).
	Delete bool   `json:"delete"`
	Reason string `json:"reason"`
	// DeleteSnapshots are the snapshots that go with it (those no other
	// image uses).
	DeleteSnapshots []string `json:"deleteSnapshotIds,omitempty"`
}

// InventoryTotals sums the inventory.
type InventoryTotals struct {
	Images           int `json:"images"`
	SizeGiB          int `json:"sizeGiB"`
	LookAlikes       int `json:"lookAlikes"`
	ImagesDeleted    int `json:"imagesToDelete"`
	SnapshotsDeleted int `json:"snapshotsToDelete"`
	GiBFreed         int `json:"sizeGiBToDelete"`
	// Cost is the next rotation's snapshot storage: added (each instance's
	// new image in each region it has images in, as large as its newest)
	// and freed (what it deletes), at most, with the monthly estimate.
	Cost rotation.CostEstimate `json:"cost"`
}

// Inspect answers `amirotate plan`: retention's listing, references and
// planner, and publish's listing of tracked launch templates, read-only.
type Inspect struct {
	Retention *Retention
	Publish   *Publish
}

// NewInspect builds Inspect from the client factory.
func NewInspect(c *ec2x.Clients, env Env) *Inspect {
	return &Inspect{Retention: NewRetention(c, env), Publish: NewPublish(c, env)}
}

// Inventory plans retention over every image of policy as the account is
// now, as the next rotation would: it assumes each listed instance gets its
// new image in each region it has images in (a dry run's stand-ins), and
// that publishing moves the instance's SSM parameter and tracked launch
// templates to it before retention runs. Other references count as they
// are now. It makes read calls only.
func (i *Inspect) Inventory(ctx context.Context, policy rotation.Policy, now time.Time) (Inventory, error) {
	r := i.Retention
	home := r.EC2.Home()
	now = now.UTC().Truncate(time.Minute)
	regions := policy.Regions(home)
	moved, err := i.publishMoves(ctx, policy, regions)
	if err != nil {
		return Inventory{}, ec2x.Classify(err)
	}
	job := retentionJob{policy: policy, home: home, now: now, rotationID: rotation.RotationID(now), preview: true, moved: moved}
	type regionInventory struct {
		plan regionPlan
		refs map[string][]string
	}
	per, err := eachRegion(regions, "inventory", func(region string) (regionInventory, error) {
		rp, err := r.planRegion(ctx, region, job)
		if err != nil {
			return regionInventory{}, err
		}
		ids := make([]string, 0, len(rp.images))
		for _, img := range rp.images {
			ids = append(ids, img.ID)
		}
		// The plan reads references of its delete candidates only; the
		// inventory shows what uses every image.
		refs, err := r.references(ctx, region, ids)
		return regionInventory{rp, refs}, err
	})
	if err != nil {
		return Inventory{}, ec2x.Classify(err)
	}
	inv := Inventory{Policy: policy.Name, At: now, Images: []InventoryImage{}, LookAlikes: []InventoryImage{}}
	added, freed := map[string]int{}, map[string]int{}
	newest := map[[2]string]bool{} // region, instance → its newest available image seen
	for _, ri := range per {
		byID := map[string]rotation.Image{}
		for _, img := range ri.plan.images {
			byID[img.ID] = img
		}
		for _, d := range ri.plan.decisions {
			img, listed := byID[d.ImageID]
			if !listed {
				continue // a stand-in for the next rotation's image
			}
			item := InventoryImage{
				InstanceID: img.Tags[rotation.TagInstanceID], Region: img.Region, ImageID: img.ID, Name: img.Name,
				Rotation: img.Tags[rotation.TagRotation], Copy: rotation.IsCopy(img.Tags), State: img.State,
				Snapshots: img.SnapshotIDs, SizeGiB: img.SizeGiB, References: ri.refs[img.ID],
				Delete: d.Delete, Reason: d.Reason, DeleteSnapshots: d.SnapshotIDs,
			}
			if when, err := rotation.ParseRotationID(item.Rotation); err == nil {
				item.AgeDays = now.Sub(when).Hours() / 24
			} else if !img.CreatedAt.IsZero() {
				item.AgeDays = now.Sub(img.CreatedAt).Hours() / 24
			}
			if rotation.Unproven(img, policy.Name) != "" {
				inv.LookAlikes = append(inv.LookAlikes, item)
				continue
			}
			inv.Images = append(inv.Images, item)
			inv.Totals.SizeGiB += item.SizeGiB
			// Decisions come newest first per instance and region.
			if key := [2]string{item.Region, item.InstanceID}; item.State == rotation.StateAvailable && !newest[key] {
				newest[key] = true
				added[item.Region] += item.SizeGiB
			}
			if item.Delete {
				inv.Totals.ImagesDeleted++
				inv.Totals.SnapshotsDeleted += len(item.DeleteSnapshots)
				if len(item.DeleteSnapshots) == len(item.Snapshots) {
					// Snapshots another image shares stay, and so does their storage.
					inv.Totals.GiBFreed += item.SizeGiB
					freed[item.Region] += item.SizeGiB
				}
			}
		}
	}
	inv.Totals.Images, inv.Totals.LookAlikes = len(inv.Images), len(inv.LookAlikes)
	inv.Totals.Cost = rotation.SnapshotPrices.EstimateCost(added, freed)
	slices.SortStableFunc(inv.LookAlikes, func(a, b InventoryImage) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.ImageID, b.ImageID))
	})
	return inv, nil
}

// publishMoves returns what the next rotation's publish moves to an
// instance's new image in a region: the references to drop from its older
// images when planning ahead.
func (i *Inspect) publishMoves(ctx context.Context, policy rotation.Policy, regions []string) (func(region, instanceID string) []string, error) {
	templates := map[[2]string][]string{} // region, instance → template ids
	if policy.Publish.LaunchTemplates {
		found, err := eachRegion(regions, "finding tracked launch templates", func(region string) ([]trackedTemplate, error) {
			ts, failed := trackedTemplates(ctx, i.Publish.EC2.In(region), nil, 0)
			for _, err := range failed {
				return nil, err
			}
			return ts, nil
		})
		if err != nil {
			return nil, err
		}
		for k, ts := range found {
			for _, t := range ts {
				key := [2]string{regions[k], t.instanceID}
				templates[key] = append(templates[key], "launch-template "+t.id)
			}
		}
	}
	return func(region, instanceID string) []string {
		moved := slices.Clone(templates[[2]string{region, instanceID}])
		if name := rotation.SSMParameterName(policy, instanceID, region); name != "" {
			moved = append(moved, "ssm-parameter "+name)
		}
		return moved
	}, nil
}
