package infra

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/rotation"
)

// InstanceDropPercent is the fall in instances targeted, from one day's
// rotations to the next, that raises the drop alarm: a fleet that lost its
// selector tags rotates fewer instances without failing anything.
const InstanceDropPercent = 20

// addDashboard adds the dashboard of the report step's metrics (one row per
// policy) and, per policy, an alarm on failed images or copies and one on a
// drop in instances targeted, both to the alarm topic.
func addDashboard(r *Rotation, p *RotationProps) {
	r.Dashboard = awscloudwatch.NewDashboard(r.Construct, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DefaultInterval: awscdk.Duration_Days(jsii.Number(14)),
	})
	r.FailedImagesAlarms = map[string]awscloudwatch.Alarm{}
	r.InstanceDropAlarms = map[string]awscloudwatch.Alarm{}
	hour, day := awscdk.Duration_Hours(jsii.Number(1)), awscdk.Duration_Days(jsii.Number(1))
	for _, ps := range p.Policies {
		name := ps.Policy.Name
		metric := func(metricName, statistic string, period awscdk.Duration) awscloudwatch.Metric {
			return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
				Namespace:     jsii.String(rotation.MetricsNamespace),
				MetricName:    jsii.String(metricName),
				DimensionsMap: &map[string]*string{rotation.MetricsDimension: jsii.String(name)},
				Statistic:     jsii.String(statistic),
				Period:        period,
			})
		}
		graph := func(title string, metrics ...awscloudwatch.IMetric) awscloudwatch.GraphWidget {
			return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(fmt.Sprintf("%s: %s", name, title)), Left: &metrics, Width: jsii.Number(6),
			})
		}
		r.Dashboard.AddWidgets(
			graph("instances targeted", metric(rotation.MetricInstancesTargeted, "Maximum", day)),
			graph("images and copies", metric(rotation.MetricImagesCreated, "Sum", day), metric(rotation.MetricImagesFailed, "Sum", day),
				metric(rotation.MetricCopiesCreated, "Sum", day), metric(rotation.MetricCopiesFailed, "Sum", day)),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(name + ": deleted (right: snapshot bytes freed, at most)"), Width: jsii.Number(6),
				Left:  &[]awscloudwatch.IMetric{metric(rotation.MetricImagesDeleted, "Sum", day), metric(rotation.MetricSnapshotsDeleted, "Sum", day)},
				Right: &[]awscloudwatch.IMetric{metric(rotation.MetricSnapshotBytesFreed, "Sum", day)},
			}),
			graph("rotation duration (s)", metric(rotation.MetricRotationDuration, "Maximum", day)),
		)

		failed := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("FILL(images, 0) + FILL(copies, 0)"),
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"images": metric(rotation.MetricImagesFailed, "Sum", hour),
				"copies": metric(rotation.MetricCopiesFailed, "Sum", hour),
			},
			Label:  jsii.String("Images and copies failed"),
			Period: hour,
		})
		r.FailedImagesAlarms[name] = failed.CreateAlarm(r.Construct, jsii.String("FailedImagesAlarm-"+name), &awscloudwatch.CreateAlarmOptions{
			AlarmDescription:   jsii.String(fmt.Sprintf("amirotate policy %s: an image or a copy failed, timed out or errored. The rotation's summary names them.", name)),
			Threshold:          jsii.Number(1),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})

		// The change from the previous day's value, in percent: two days of
		// data give DIFF its preceding point; a day without a rotation gives
		// no value, which is no drop.
		drop := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression:   jsii.String("100 * DIFF(targeted) / (targeted - DIFF(targeted))"),
			UsingMetrics: &map[string]awscloudwatch.IMetric{"targeted": metric(rotation.MetricInstancesTargeted, "Maximum", day)},
			Label:        jsii.String("Change in instances targeted (%)"),
			Period:       day,
		})
		r.InstanceDropAlarms[name] = drop.CreateAlarm(r.Construct, jsii.String("InstanceDropAlarm-"+name), &awscloudwatch.CreateAlarmOptions{
			AlarmDescription: jsii.String(fmt.Sprintf("amirotate policy %s targeted at least %d%% fewer instances than the day before: instances may have lost the selector's tags.",
				name, InstanceDropPercent)),
			Threshold:          jsii.Number(-InstanceDropPercent),
			EvaluationPeriods:  jsii.Number(2),
			DatapointsToAlarm:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		for _, a := range []awscloudwatch.Alarm{r.FailedImagesAlarms[name], r.InstanceDropAlarms[name]} {
			a.AddAlarmAction(awscloudwatchactions.NewSnsAction(r.AlarmTopic))
		}
	}
}
