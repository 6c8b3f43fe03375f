package steps

import (
	"encoding/json"
	"io"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
)

// The rotation's metrics, written by the report step as one log line in
// CloudWatch's embedded metric format (EMF): CloudWatch Logs extracts the
// metrics from the line itself, so they cost no API call and no permission.
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMetadata struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// writeMetrics writes s's metrics as one EMF line to w. The rotation and
// trigger ride along as properties (searchable in Logs Insights, not
// dimensions: a dimension per rotation would make a metric per night).
func writeMetrics(w io.Writer, s Summary, duration time.Duration, at time.Time) error {
	values := []struct {
		name, unit string
		value      float64
	}{
		{rotation.MetricInstancesTargeted, "Count", float64(s.Instances)},
		{rotation.MetricImagesCreated, "Count", float64(s.ImagesCreated)},
		{rotation.MetricImagesFailed, "Count", float64(s.ImagesFailed)},
		{rotation.MetricCopiesCreated, "Count", float64(s.CopiesCreated)},
		{rotation.MetricCopiesFailed, "Count", float64(s.CopiesFailed)},
		{rotation.MetricImagesDeleted, "Count", float64(s.ImagesDeleted)},
		{rotation.MetricSnapshotsDeleted, "Count", float64(s.SnapshotsDeleted + s.OrphansDeleted)},
		{rotation.MetricSnapshotBytesFreed, "Bytes", float64(s.Cost.GiBFreed) * (1 << 30)},
		{rotation.MetricRotationDuration, "Seconds", duration.Seconds()},
	}
	line := map[string]any{
		rotation.MetricsDimension: s.Policy,
		"rotation":                s.Rotation,
		"trigger":                 s.Trigger,
		"failed":                  s.Failed,
	}
	d := emfDirective{Namespace: rotation.MetricsNamespace, Dimensions: [][]string{{rotation.MetricsDimension}}}
	for _, v := range values {
		d.Metrics = append(d.Metrics, emfMetric{Name: v.name, Unit: v.unit})
		line[v.name] = v.value
	}
	line["_aws"] = emfMetadata{Timestamp: at.UnixMilli(), CloudWatchMetrics: []emfDirective{d}}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
