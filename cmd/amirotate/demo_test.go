package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo_TwoRotationsADayApartShowRetention runs `amirotate demo` (what
// `make run` runs) end to end: the embedded simulator, the seeded fleet, the
// real state machine in the node runner. It checks what the README and the
// issue promise: at least 5 instances in 2 policies, copies into a third
// region, a tracked launch template that gets a new version, two rotations
// a day apart per policy, all succeeding, the second deleting what the first
// made where the policy keeps one. (How long it takes is logged, not
// asserted: the time is measured, a loaded machine must not fail it.)
func TestDemo_TwoRotationsADayApartShowRetention(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := runDemo(ctx, []string{"--quiet"}, &stdout, &stderr)
	took := time.Since(start)
	out := stdout.String()
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	// The bound is on a fresh machine without the race detector; the
	// race detector slows the Go side, so allow it the same 2 minutes only.

	m := regexp.MustCompile(`Seeded (\d+) instances in (\S+); launch template (lt-[0-9a-f]{17}) tracks (i-[0-9a-f]{17})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no seeding line:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 5 {
		t.Errorf("seeded %d instances, want at least 5", n)
	}
	lt, tracked := m[3], m[4]
	policies := map[string]bool{}
	for _, p := range regexp.MustCompile(`(?m)^  i-[0-9a-f]{17}\s+\S+\s+policy (\S+)$`).FindAllStringSubmatch(out, -1) {
		policies[p[1]] = true
	}
	if len(policies) < 2 {
		t.Errorf("fleet spans policies %v, want at least 2", policies)
	}

	// Four executions (2 policies × 2 days), each succeeding.
	sections := strings.Split(out, "=== Day ")[1:]
	if len(sections) != 4 {
		t.Fatalf("%d rotations printed, want 4:\n%s", len(sections), out)
	}
	regions := map[string]bool{}
	deletedOnDay2 := 0
	for _, s := range sections {
		if !strings.Contains(s, "execution SUCCEEDED") {
			t.Errorf("rotation did not succeed:\n%s", s)
		}
		for _, r := range regexp.MustCompile(`(?m)^  i-[0-9a-f]{17}\s+(\S+)\s+ami-`).FindAllStringSubmatch(s, -1) {
			regions[r[1]] = true
		}
		d := regexp.MustCompile(`images deleted (\d+)`).FindStringSubmatch(s)
		if d == nil {
			t.Fatalf("no totals line:\n%s", s)
		}
		n, _ := strconv.Atoi(d[1])
		if strings.HasPrefix(s, "1:") && n != 0 {
			t.Errorf("the first day deleted %d images; there was nothing to expire", n)
		}
		if strings.HasPrefix(s, "2:") {
			deletedOnDay2 += n
		}
		if strings.Contains(s, tracked+"  us-east-1") && !strings.Contains(s, lt+":v") {
			t.Errorf("tracked instance %s's rotation does not publish launch template %s:\n%s", tracked, lt, s)
		}
	}
	if len(regions) < 3 {
		t.Errorf("images in regions %v, want the home region and copies into two more", regions)
	}
	if deletedOnDay2 == 0 {
		t.Errorf("the second day's rotations deleted nothing; the demo is meant to show retention:\n%s", out)
	}
	t.Logf("demo took %s; day 2 deleted %d images", took, deletedOnDay2)
}
