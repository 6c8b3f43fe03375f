package stack

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// when computes a schedule's fire times: cron(...), rate(...) or at(...)
// in a time zone, as EventBridge Scheduler reads them
// (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html).
type when struct {
	cron *cronSpec
	rate time.Duration
	at   time.Time
	loc  *time.Location
}

var (
	cronExpr = regexp.MustCompile(`^cron\((.+)\)$`)
	rateExpr = regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$`)
	atExpr   = regexp.MustCompile(`^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$`)
)

func parseWhen(expr, tz string) (*when, error) {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %v", tz, err)
	}
	w := &when{loc: loc}
	switch {
	case cronExpr.MatchString(expr):
		c, err := parseCron(cronExpr.FindStringSubmatch(expr)[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", expr, err)
		}
		w.cron = c
	case rateExpr.MatchString(expr):
		m := rateExpr.FindStringSubmatch(expr)
		n, _ := strconv.Atoi(m[1])
		unit := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[m[2][0]]
		if n < 1 {
			return nil, fmt.Errorf("%s: the rate must be at least 1", expr)
		}
		w.rate = time.Duration(n) * unit
	case atExpr.MatchString(expr):
		t, err := time.ParseInLocation("2006-01-02T15:04:05", atExpr.FindStringSubmatch(expr)[1], loc)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", expr, err)
		}
		w.at = t
	default:
		return nil, fmt.Errorf("%q: want cron(...), rate(N unit) or at(yyyy-mm-ddThh:mm:ss)", expr)
	}
	return w, nil
}

// next is the first fire time after t (zero: none). A rate schedule counts
// from start.
func (w *when) next(t, start time.Time) time.Time {
	switch {
	case w.cron != nil:
		return w.cron.next(t.In(w.loc))
	case w.rate > 0:
		n := t.Sub(start)/w.rate + 1
		return start.Add(n * w.rate)
	case t.Before(w.at):
		return w.at
	}
	return time.Time{}
}

// first is a schedule's first fire time once it starts at start: a rate
// schedule without a StartDate invokes its target at once ("If you don't
// provide a StartDate for a rate-based schedule, your schedule starts
// invoking the target immediately":
// https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html),
// the others at their next occurrence.
func (w *when) first(start time.Time) time.Time {
	if w.rate > 0 {
		return start
	}
	return w.next(start, start)
}

// cronSpec is a parsed Scheduler cron: minutes hours day-of-month month
// day-of-week year. Days of the week are 1-7 (SUN-SAT).
type cronSpec struct {
	minutes, hours, dom, months, dow, years []bool
	anyDOM, anyDOW                          bool
}

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

func parseCron(s string) (*cronSpec, error) {
	f := strings.Fields(s)
	if len(f) != 6 {
		return nil, fmt.Errorf("a cron has 6 fields (minutes hours day-of-month month day-of-week year), got %d", len(f))
	}
	if (f[2] == "?") == (f[4] == "?") {
		return nil, fmt.Errorf("exactly one of day-of-month and day-of-week must be \"?\"")
	}
	c := &cronSpec{anyDOM: f[2] == "?" || f[2] == "*", anyDOW: f[4] == "?" || f[4] == "*"}
	var err error
	fields := []struct {
		dst      *[]bool
		text     string
		lo, hi   int
		names    []string
		nameBase int
		what     string
	}{
		{&c.minutes, f[0], 0, 59, nil, 0, "minutes"},
		{&c.hours, f[1], 0, 23, nil, 0, "hours"},
		{&c.dom, f[2], 1, 31, nil, 0, "day-of-month"},
		{&c.months, f[3], 1, 12, monthNames, 1, "month"},
		{&c.dow, f[4], 1, 7, dayNames, 1, "day-of-week"},
		{&c.years, f[5], 1970, 2199, nil, 0, "year"},
	}
	for _, fd := range fields {
		if *fd.dst, err = parseField(fd.text, fd.lo, fd.hi, fd.names, fd.nameBase); err != nil {
			return nil, fmt.Errorf("%s %q: %w", fd.what, fd.text, err)
		}
	}
	return c, nil
}

func parseField(s string, lo, hi int, names []string, nameBase int) ([]bool, error) {
	set := make([]bool, hi+1)
	if s == "?" || s == "*" {
		for i := lo; i <= hi; i++ {
			set[i] = true
		}
		return set, nil
	}
	if strings.ContainsAny(s, "LW#") && !isName(s, names) {
		return nil, fmt.Errorf("L, W and # are not supported by the local scheduler")
	}
	num := func(v string) (int, error) {
		for i, n := range names {
			if strings.EqualFold(v, n) {
				return i + nameBase, nil
			}
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%q is not in %d-%d", v, lo, hi)
		}
		return n, nil
	}
	for _, part := range strings.Split(s, ",") {
		rng, step := part, 1
		if i := strings.Index(part, "/"); i >= 0 {
			var err error
			if step, err = strconv.Atoi(part[i+1:]); err != nil || step < 1 {
				return nil, fmt.Errorf("step %q", part[i+1:])
			}
			rng = part[:i]
		}
		from, to := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if from, err = num(a); err != nil {
				return nil, err
			}
			if to, err = num(b); err != nil {
				return nil, err
			}
		default:
			var err error
			if from, err = num(rng); err != nil {
				return nil, err
			}
			if !strings.Contains(part, "/") {
				to = from
			}
		}
		// A range that wraps (FRI-MON, 22-2) runs past the field's end and
		// on from its start, as in Quartz cron.
		for i, n := from, 0; n <= (to-from+hi-lo+1)%(hi-lo+1); i, n = i+step, n+step {
			set[lo+(i-lo)%(hi-lo+1)] = true
		}
	}
	return set, nil
}

func isName(s string, names []string) bool {
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '-' || r == '/' }) {
		found := false
		for _, n := range names {
			if strings.EqualFold(part, n) {
				found = true
			}
		}
		if _, err := strconv.Atoi(part); err != nil && !found {
			return false
		}
	}
	return true
}

// next is the first time after t (in t's location) the cron names.
func (c *cronSpec) next(t time.Time) time.Time {
	loc := t.Location()
	for d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc); d.Year() <= 2199; d = time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc) {
		switch {
		case !c.years[d.Year()]:
			d = time.Date(d.Year()+1, 1, 0, 0, 0, 0, 0, loc) // on to the next year's first day
			continue
		case !c.months[int(d.Month())]:
			d = time.Date(d.Year(), d.Month()+1, 0, 0, 0, 0, 0, loc) // on to the next month's first day
			continue
		case !c.dayMatches(d):
			continue
		}
		for h := 0; h < 24; h++ {
			if !c.hours[h] {
				continue
			}
			for m := 0; m < 60; m++ {
				if !c.minutes[m] {
					continue
				}
				cand := time.Date(d.Year(), d.Month(), d.Day(), h, m, 0, 0, loc)
				if cand.Hour() != h || cand.Minute() != m {
					continue // a local time the change to summer time skips
				}
				if cand.After(t) {
					return cand.UTC()
				}
			}
		}
	}
	return time.Time{}
}

func (c *cronSpec) dayMatches(d time.Time) bool {
	domOK := c.dom[d.Day()]
	dowOK := c.dow[int(d.Weekday())+1]
	switch {
	case c.anyDOM:
		return dowOK
	case c.anyDOW:
		return domOK
	}
	return domOK && dowOK
}
