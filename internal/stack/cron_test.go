package stack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Fire times as EventBridge Scheduler computes them: in the schedule's time
// zone, summer time included.
func TestWhen_Next(t *testing.T) {
	tests := []struct {
		expr, tz, after, want string
	}{
		{"cron(0 3 * * ? *)", "UTC", "2026-11-25T02:59:00Z", "2026-11-25T03:00:00Z"},
		{"cron(0 3 * * ? *)", "UTC", "2026-11-25T03:00:00Z", "2026-11-26T03:00:00Z"},
		{"cron(0 3 * * ? *)", "Europe/Berlin", "2026-11-25T00:00:00Z", "2026-11-25T02:00:00Z"},  // CET
		{"cron(0 3 * * ? *)", "Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-01T01:00:00Z"},  // CEST
		{"cron(30 2 * * ? *)", "Europe/Berlin", "2026-03-29T00:00:00Z", "2026-03-30T00:30:00Z"}, // 02:30 does not exist on 29 March
		{"cron(0 12 ? * MON-FRI *)", "UTC", "2026-11-27T12:00:00Z", "2026-11-30T12:00:00Z"},     // Friday → Monday
		{"cron(0 0 1 * ? *)", "UTC", "2026-11-25T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"cron(0/15 * * * ? *)", "UTC", "2026-11-25T10:16:00Z", "2026-11-25T10:30:00Z"},
		{"cron(0 9 ? * 2,4 *)", "UTC", "2026-11-25T10:00:00Z", "2026-11-30T09:00:00Z"}, // 2 = Monday, 4 = Wednesday (25 Nov 2026)
		{"cron(0 8 ? JAN,JUL MON 2027)", "UTC", "2026-11-25T00:00:00Z", "2027-01-04T08:00:00Z"},
		{"cron(0 0 ? * FRI-MON *)", "UTC", "2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z"}, // a range that wraps: Fri, Sat, Sun, Mon
		{"cron(0 0 ? * FRI-MON *)", "UTC", "2026-11-30T00:00:00Z", "2026-12-04T00:00:00Z"},
		{"cron(0 22-2 * * ? *)", "UTC", "2026-11-25T02:00:00Z", "2026-11-25T22:00:00Z"},
		{"cron(0 22-2 * * ? *)", "UTC", "2026-11-25T23:00:00Z", "2026-11-26T00:00:00Z"},
		{"cron(0 2 1 1 ? 2031)", "UTC", "2026-11-25T00:00:00Z", "2031-01-01T02:00:00Z"},               // years ahead
		{"cron(15 2 * * ? *)", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-04T15:15:00Z"}, // 02:15 does not exist on 4 October (a half-hour change)
		{"rate(6 hours)", "UTC", "2026-11-25T07:00:00Z", "2026-11-25T12:00:00Z"},
		{"at(2026-12-24T18:00:00)", "Europe/Berlin", "2026-11-25T00:00:00Z", "2026-12-24T17:00:00Z"},
		{"at(2026-12-24T18:00:00)", "UTC", "2026-12-25T00:00:00Z", "0001-01-01T00:00:00Z"},
	}
	start := mustTime(t, "2026-11-25T00:00:00Z")
	for _, tt := range tests {
		t.Run(tt.expr+" "+tt.tz, func(t *testing.T) {
			w, err := parseWhen(tt.expr, tt.tz)
			if err != nil {
				t.Fatal(err)
			}
			got := w.next(mustTime(t, tt.after), start)
			if want := mustTime(t, tt.want); !got.Equal(want) {
				t.Errorf("next after %s = %s, want %s", tt.after, got.Format(time.RFC3339), tt.want)
			}
		})
	}
}

func TestWhen_RefusesWhatItCannotRead(t *testing.T) {
	for _, expr := range []string{"cron(0 3 * * * *)", "cron(0 3 * *)", "cron(0 3 L * ? *)", "cron(61 3 * * ? *)", "rate(0 hours)", "every day"} {
		if _, err := parseWhen(expr, "UTC"); err == nil {
			t.Errorf("parseWhen(%q) accepted it", expr)
		}
	}
	if _, err := parseWhen("cron(0 3 * * ? *)", "Mars/Olympus"); err == nil {
		t.Error("an unknown time zone was accepted")
	}
}

func TestTransform_InputTemplate(t *testing.T) {
	event := []byte(`{"id":"e1","time":"2026-11-25T14:41:38Z","detail":{"state":"a \"quoted\" word","n":3}}`)
	rule := Rule{ARN: "arn:aws:events:us-east-1:123456789012:rule/R", Name: "R",
		InputTemplate: `{"trigger":"tag-change","event":<aws.events.event>,"state":"<s>","n":<n>,"rule":"<aws.events.rule-name>"}`,
		InputPaths:    map[string]string{"s": "$.detail.state", "n": "$.detail.n"}}
	out, err := transform(rule, event)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Event json.RawMessage `json:"event"`
		State string          `json:"state"`
		N     int             `json:"n"`
		Rule  string          `json:"rule"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if string(got.Event) != string(event) || got.State != `a "quoted" word` || got.N != 3 || got.Rule != "R" {
		t.Errorf("transformed to %s", out)
	}
	if _, err := transform(Rule{InputTemplate: `{"x":<nope>}`}, event); err == nil || !strings.Contains(err.Error(), "<nope>") {
		t.Errorf("an unknown variable: %v", err)
	}
	if out, _ := transform(Rule{}, event); out != string(event) {
		t.Errorf("no transformer: %s, want the event", out)
	}
}

// A rate schedule without a StartDate invokes its target as soon as it
// starts; a cron schedule at its next occurrence.
func TestWhen_First(t *testing.T) {
	start := mustTime(t, "2026-11-25T07:13:00Z")
	for expr, want := range map[string]string{
		"rate(6 hours)":     "2026-11-25T07:13:00Z",
		"cron(0 3 * * ? *)": "2026-11-26T03:00:00Z",
	} {
		w, err := parseWhen(expr, "UTC")
		if err != nil {
			t.Fatal(err)
		}
		if got := w.first(start); !got.Equal(mustTime(t, want)) {
			t.Errorf("%s: first fire %s, want %s", expr, got.Format(time.RFC3339), want)
		}
	}
}
