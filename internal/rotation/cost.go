package rotation

import (
	"maps"
	"math"
	"slices"
)

// Snapshot storage and what it costs. Sizes are the images' EBS volume
// sizes in GiB: what their snapshots hold at most (EBS stores snapshots
// incrementally and bills only the blocks each stores), so every figure here
// is an upper bound. EBS bills snapshot storage per GB-month, where its GB
// is 2^30 bytes, so GiB are billed as they are.

// SnapshotPrices are the list prices of EBS snapshot storage (standard
// tier), USD per GB-month, by region. A region missing here has no known
// price: estimates leave it out and name it, never guess it.
var SnapshotPrices = PriceTable{
	// The EBS User Guide gives the standard tier's rate as $0.05 per
	// GB-month; its prices are those of US East (N. Virginia). Other
	// regions' rates are on https://aws.amazon.com/ebs/pricing/, which the
	// sources this table was built from did not include.
	Source:     "https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-archive-pricing.html",
	Date:       "2026-11-30",
	PerGBMonth: map[string]float64{"us-east-1": 0.05},
}

// PriceTable is a dated list of per-region prices with its source.
type PriceTable struct {
	Source     string
	Date       string
	PerGBMonth map[string]float64
}

// CostEstimate is snapshot storage added and freed, and what it changes in
// the monthly bill at list prices, for the regions whose price is known.
type CostEstimate struct {
	GiBAdded int `json:"snapshotGiBAdded"`
	GiBFreed int `json:"snapshotGiBFreed"`
	// MonthlyUSDAdded and MonthlyUSDFreed price the GiB of the regions in
	// Priced only.
	MonthlyUSDAdded float64  `json:"monthlyUSDAdded"`
	MonthlyUSDFreed float64  `json:"monthlyUSDFreed"`
	Priced          []string `json:"pricedRegions,omitempty"`
	// Unpriced are the regions with GiB added or freed whose price is not
	// known: their storage is in the GiB, not in the dollars.
	Unpriced    []string `json:"unpricedRegions,omitempty"`
	PriceSource string   `json:"priceSource"`
	PriceDate   string   `json:"priceDate"`
}

// EstimateCost prices GiB added and freed per region with t.
func (t PriceTable) EstimateCost(added, freed map[string]int) CostEstimate {
	c := CostEstimate{PriceSource: t.Source, PriceDate: t.Date}
	regions := map[string]bool{}
	for r, g := range added {
		c.GiBAdded += g
		regions[r] = regions[r] || g > 0
	}
	for r, g := range freed {
		c.GiBFreed += g
		regions[r] = regions[r] || g > 0
	}
	for _, r := range slices.Sorted(maps.Keys(regions)) {
		if !regions[r] {
			continue
		}
		price, ok := t.PerGBMonth[r]
		if !ok {
			c.Unpriced = append(c.Unpriced, r)
			continue
		}
		c.Priced = append(c.Priced, r)
		c.MonthlyUSDAdded += float64(added[r]) * price
		c.MonthlyUSDFreed += float64(freed[r]) * price
	}
	c.MonthlyUSDAdded = cents(c.MonthlyUSDAdded)
	c.MonthlyUSDFreed = cents(c.MonthlyUSDFreed)
	return c
}

func cents(usd float64) float64 { return math.Round(usd*100) / 100 }
