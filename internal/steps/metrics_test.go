package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

// emfUnits are the units the embedded metric format accepts (CloudWatch's
// StandardUnit values).
var emfUnits = map[string]bool{
	"Seconds": true, "Microseconds": true, "Milliseconds": true, "Bytes": true, "Kilobytes": true, "Megabytes": true,
	"Gigabytes": true, "Terabytes": true, "Bits": true, "Kilobits": true, "Megabits": true, "Gigabits": true, "Terabits": true,
	"Percent": true, "Count": true, "Bytes/Second": true, "Kilobytes/Second": true, "Megabytes/Second": true,
	"Gigabytes/Second": true, "Terabytes/Second": true, "Bits/Second": true, "Kilobits/Second": true,
	"Megabits/Second": true, "Gigabits/Second": true, "Terabits/Second": true, "Count/Second": true, "None": true,
}

// checkEMF checks one log line against the required fields and limits of
// the embedded metric format specification
// (CloudWatch_Embedded_Metric_Format_Specification): a JSON object whose
// _aws holds Timestamp (epoch milliseconds) and CloudWatchMetrics, an array
// of directives each with a Namespace (1-255 characters), Dimensions (an
// array of dimension sets of at most 30 names, each a root member whose
// value is a string) and Metrics (at most 100, each with a Name of 1-1024
// characters, an optional valid Unit, and a root member whose value is a
// number or an array of at most 100 numbers).
func checkEMF(line []byte) error {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(line, &root); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	var meta struct {
		Timestamp         *json.Number `json:"Timestamp"`
		CloudWatchMetrics *[]struct {
			Namespace  *string     `json:"Namespace"`
			Dimensions *[][]string `json:"Dimensions"`
			Metrics    *[]struct {
				Name *string `json:"Name"`
				Unit *string `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	}
	raw, ok := root["_aws"]
	if !ok {
		return fmt.Errorf("no _aws member")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&meta); err != nil {
		return fmt.Errorf("_aws: %w", err)
	}
	if meta.Timestamp == nil {
		return fmt.Errorf("_aws.Timestamp is missing")
	}
	if ms, err := meta.Timestamp.Int64(); err != nil || ms <= 0 {
		return fmt.Errorf("_aws.Timestamp %s is not epoch milliseconds", *meta.Timestamp)
	}
	if meta.CloudWatchMetrics == nil || len(*meta.CloudWatchMetrics) == 0 {
		return fmt.Errorf("_aws.CloudWatchMetrics is missing or empty")
	}
	for i, d := range *meta.CloudWatchMetrics {
		if d.Namespace == nil || len(*d.Namespace) < 1 || len(*d.Namespace) > 255 {
			return fmt.Errorf("directive %d: Namespace missing or not 1-255 characters", i)
		}
		if d.Dimensions == nil {
			return fmt.Errorf("directive %d: Dimensions is missing", i)
		}
		for _, set := range *d.Dimensions {
			if len(set) > 30 {
				return fmt.Errorf("directive %d: a dimension set has %d names, more than 30", i, len(set))
			}
			for _, name := range set {
				var v string
				if err := json.Unmarshal(root[name], &v); err != nil {
					return fmt.Errorf("directive %d: dimension %q has no string member at the root", i, name)
				}
			}
		}
		if d.Metrics == nil || len(*d.Metrics) > 100 {
			return fmt.Errorf("directive %d: Metrics missing or more than 100", i)
		}
		for _, m := range *d.Metrics {
			if m.Name == nil || len(*m.Name) < 1 || len(*m.Name) > 1024 {
				return fmt.Errorf("directive %d: a metric's Name is missing or not 1-1024 characters", i)
			}
			if m.Unit != nil && !emfUnits[*m.Unit] {
				return fmt.Errorf("metric %s: unit %q is not a CloudWatch unit", *m.Name, *m.Unit)
			}
			var v float64
			var vs []float64
			if json.Unmarshal(root[*m.Name], &v) != nil && (json.Unmarshal(root[*m.Name], &vs) != nil || len(vs) > 100) {
				return fmt.Errorf("metric %s has no numeric member at the root", *m.Name)
			}
		}
	}
	return nil
}

func TestMetrics_RotationSummaryIsOneValidEMFLine(t *testing.T) {
	start := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	end := start.Add(17 * time.Minute)
	var out bytes.Buffer
	rep := Report{Metrics: &out, Now: func() time.Time { return end }}
	b := reportBatch()
	rot := b.Rotation
	rot.StartedAt = start
	in := ReportIn{Rotation: &rot, Policy: &b.Policy, Results: []BatchResult{BatchResultOf(b)}}
	if _, err := rep.Handle(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %d:\n%s", len(lines), out.String())
	}
	if err := checkEMF([]byte(lines[0])); err != nil {
		t.Fatalf("not valid EMF: %v\n%s", err, lines[0])
	}
	var got map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &got)
	want := map[string]float64{
		rotation.MetricInstancesTargeted: 4, rotation.MetricImagesCreated: 3, rotation.MetricImagesFailed: 1, rotation.MetricCopiesCreated: 1,
		rotation.MetricCopiesFailed: 1, rotation.MetricImagesDeleted: 1, rotation.MetricSnapshotsDeleted: 2, rotation.MetricRotationDuration: 17 * 60,
		rotation.MetricSnapshotBytesFreed: 28 << 30,
	}
	for name, v := range want {
		if f, _ := got[name].(float64); math.Abs(f-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if got[rotation.MetricsDimension] != "web" || got["rotation"] != "20261125T0300Z" {
		t.Errorf("dimension and properties: %s", lines[0])
	}

	// A batch report and a dry run write no metrics: a dry run changes
	// nothing and would count instances twice.
	out.Reset()
	if _, err := rep.Handle(context.Background(), ReportIn{Batch: &b}); err != nil {
		t.Fatal(err)
	}
	dry := b.Policy
	dry.DryRun = true
	if _, err := rep.Handle(context.Background(), ReportIn{Rotation: &rot, Policy: &dry, Results: in.Results}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("metrics written for a batch or a dry run: %s", out.String())
	}
}

// The checker itself refuses lines that break the specification.
func TestCheckEMF_RefusesWhatTheSpecificationForbids(t *testing.T) {
	for name, line := range map[string]string{
		"no _aws":         `{"Policy":"web","X":1}`,
		"no timestamp":    `{"_aws":{"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"Policy":"web","X":1}`,
		"no namespace":    `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"Policy":"web","X":1}`,
		"no dimensions":   `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Metrics":[{"Name":"X"}]}]},"Policy":"web","X":1}`,
		"missing dim":     `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"X":1}`,
		"missing value":   `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"Policy":"web"}`,
		"bad unit":        `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X","Unit":"Images"}]}]},"Policy":"web","X":1}`,
		"string value":    `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"Policy":"web","X":"1"}`,
		"float timestamp": `{"_aws":{"Timestamp":1.5,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Policy"]],"Metrics":[{"Name":"X"}]}]},"Policy":"web","X":1}`,
	} {
		if checkEMF([]byte(line)) == nil {
			t.Errorf("%s: accepted %s", name, line)
		}
	}
}
