package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

func sizeGiB(img types.Image) int {
	n := 0
	for _, b := range img.BlockDeviceMappings {
		if b.Ebs != nil {
			n += int(aws.ToInt32(b.Ebs.VolumeSize))
		}
	}
	return n
}

// The snapshot storage a rotation adds and frees, and its monthly estimate:
// plan says it of the next rotation before, the rotation's summary (the
// event it publishes) after, and both agree with the images EC2 has:
// added is the new images' volume size, freed the deleted images'; only
// us-east-1 has a list price in the table, eu-west-1 is named unpriced.
func TestCost_PlanAndSummaryAgreeWithTheImages(t *testing.T) {
	w := newRunWorld(t) // keep 1: the next rotation deletes every older image
	w.rotateOK(day(2))
	byRegion := func() map[string]map[string]int {
		out := map[string]map[string]int{}
		for _, region := range demoRegions[:2] {
			out[region] = map[string]int{}
			for _, imgs := range w.ownImages(region) {
				for _, img := range imgs {
					out[region][aws.ToString(img.ImageId)] = sizeGiB(img)
				}
			}
		}
		return out
	}
	before := byRegion()
	old := map[string]int{}
	for region, imgs := range before {
		for _, g := range imgs {
			old[region] += g
		}
	}

	var stdout, stderr bytes.Buffer
	j := filepath.Join(w.dir, "plan.json")
	if err := runPlan(w.ctx, []string{"--policy", w.policy, "--json", j}, &stdout, &stderr); err != nil {
		t.Fatalf("plan: %v\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	var inv steps.Inventory
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	home, eu := demoRegions[0], demoRegions[1]
	planned := inv.Totals.Cost
	if planned.GiBFreed != old[home]+old[eu] || planned.GiBAdded != old[home]+old[eu] {
		t.Errorf("plan: %+v; want %d GiB added (the new images, as large as today's) and freed", planned, old[home]+old[eu])
	}
	if !strings.Contains(stdout.String(), "Snapshot storage of the next rotation: +") || !strings.Contains(stdout.String(), "no list price known for eu-west-1") {
		t.Errorf("plan's table does not give the cost:\n%s", stdout.String())
	}

	rep, out, err := w.rotateJSON(day(1))
	if err != nil {
		t.Fatalf("rotation: %v\n%s", err, out)
	}
	t.Logf("amirotate run:\n%s", out)
	after := byRegion()
	added := map[string]int{}
	for region, imgs := range after {
		for id, g := range imgs {
			if _, ok := before[region][id]; !ok {
				added[region] += g
			}
		}
	}
	c := rep.Summary.Cost
	if c.GiBAdded != added[home]+added[eu] || c.GiBFreed != old[home]+old[eu] || c.GiBAdded == 0 {
		t.Errorf("summary: %+v; want %d GiB added, %d freed", c, added[home]+added[eu], old[home]+old[eu])
	}
	price := rotation.SnapshotPrices.PerGBMonth[home]
	if want := float64(added[home]) * price; c.MonthlyUSDAdded < want-0.005 || c.MonthlyUSDAdded > want+0.005 {
		t.Errorf("monthly added $%.2f, want $%.2f (%d GiB in %s at $%.3f)", c.MonthlyUSDAdded, want, added[home], home, price)
	}
	if !slices.Equal(c.Priced, []string{home}) || !slices.Equal(c.Unpriced, []string{eu}) || c.PriceSource == "" {
		t.Errorf("summary cost %+v; want %s priced, %s named unpriced, the source cited", c, home, eu)
	}
	if planned.GiBFreed != c.GiBFreed || planned.GiBAdded != c.GiBAdded {
		t.Errorf("plan said +%d/-%d GiB, the rotation did +%d/-%d", planned.GiBAdded, planned.GiBFreed, c.GiBAdded, c.GiBFreed)
	}
	// The event the rotation publishes carries the same figures.
	if len(rep.Execution.Events) != 1 {
		t.Fatalf("%d events published, want 1", len(rep.Execution.Events))
	}
	detail := rep.Execution.Events[0].Detail
	var text string
	if json.Unmarshal(detail, &text) == nil {
		detail = json.RawMessage(text) // the Detail as EventBridge takes it: a JSON string
	}
	var event struct {
		Cost rotation.CostEstimate `json:"cost"`
	}
	if err := json.Unmarshal(detail, &event); err != nil || event.Cost.GiBAdded != c.GiBAdded || event.Cost.GiBFreed != c.GiBFreed ||
		event.Cost.MonthlyUSDAdded != c.MonthlyUSDAdded || event.Cost.PriceSource != c.PriceSource {
		t.Errorf("the event's cost %+v (%v), want the summary's %+v", event.Cost, err, c)
	}
	if !strings.Contains(out, "snapshot storage: +") {
		t.Errorf("the run's summary does not give the cost:\n%s", out)
	}
}
