package steps

import (
	"encoding/json"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Step Functions caps a state's input and output at 256 KiB. A batch of
// 100 instances in four regions with keep 7 reports some 2,800 kept images
// next to its 400 records and publications, which can pass that. These
// budgets leave room for the rest of the state.
const (
	// batchBudget bounds the JSON of a whole Batch leaving retention.
	batchBudget = 200 << 10
	// othersBudget bounds RetentionOthersOut, which joins the execution's
	// top-level state (targets, batch results) under $.others.
	othersBudget = 96 << 10
)

// routine reasons say only that the retention rule keeps an image; they
// are the first detail a report too large for Step Functions gives up.
var routine = map[string]bool{
	rotation.ReasonNewest:     true,
	rotation.ReasonWithinKeep: true,
	rotation.ReasonWithinAge:  true,
}

// fitReports replaces the routine kept entries by a count (KeptByRule)
// when size() is over budget. Deletions, failures and every other reason
// (in use, keep tag, protection, hold, ...) always stay listed.
func fitReports(reps []rotation.ScopeReport, budget int, size func() int) {
	if size() <= budget {
		return
	}
	for i := range reps {
		rep := &reps[i]
		for id, why := range rep.Kept {
			if routine[rotation.ReasonCode(why)] {
				delete(rep.Kept, id)
				rep.KeptByRule++
			}
		}
		if len(rep.Kept) == 0 {
			rep.Kept = nil
		}
	}
}

func jsonSize(v any) int {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(raw)
}
