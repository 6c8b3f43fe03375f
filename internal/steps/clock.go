package steps

import "time"

// clockNow is a step's time: its Now when set (tests), else the wall clock.
func clockNow(now func() time.Time) time.Time {
	if now != nil {
		return now()
	}
	return time.Now()
}
