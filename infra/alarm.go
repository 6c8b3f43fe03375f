package infra

import (
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"
)

// addAlarm raises an alarm when a rotation fails (any image failed, timed out
// or errored: the state machine ends in RotationFailed) or an execution
// times out, and sends it to the alarm topic.
func addAlarm(r *Rotation, p *RotationProps) {
	r.AlarmTopic = p.AlarmTopic
	if r.AlarmTopic == nil {
		r.AlarmTopic = newAlarmTopic(r, p.AlarmEmail)
	}
	period := awscdk.Duration_Minutes(jsii.Number(5))
	sum := &awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: period}
	// FILL: Step Functions reports these metrics only when something
	// happened, and a sum with a missing series would be missing too.
	failures := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String("FILL(failed, 0) + FILL(timedOut, 0)"),
		UsingMetrics: &map[string]awscloudwatch.IMetric{
			"failed":   r.StateMachine.MetricFailed(sum),
			"timedOut": r.StateMachine.MetricTimedOut(sum),
		},
		Label:  jsii.String("Failed or timed-out rotations"),
		Period: period,
	})
	r.Alarm = failures.CreateAlarm(r.Construct, jsii.String("RotationFailedAlarm"), &awscloudwatch.CreateAlarmOptions{
		AlarmDescription:   jsii.String("An amirotate rotation failed or timed out. The execution's summary (event \"AMI Rotation Completed\" and its history) names every image that did not make it."),
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		// No executions is no failure.
		TreatMissingData: awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	r.Alarm.AddAlarmAction(awscloudwatchactions.NewSnsAction(r.AlarmTopic))

	// A rotation that never starts fails no execution: alarm when Scheduler
	// dropped an invocation after its retries, or a tag-change rule could
	// not start the state machine.
	metrics := map[string]awscloudwatch.IMetric{"dropped": r.ScheduleGroup.MetricDropped(sum)}
	expr := "FILL(dropped, 0)"
	for i, name := range slices.Sorted(maps.Keys(r.TagChangeRules)) {
		id := fmt.Sprintf("rule%d", i)
		metrics[id] = awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String("AWS/Events"),
			MetricName:    jsii.String("FailedInvocations"),
			DimensionsMap: &map[string]*string{"RuleName": r.TagChangeRules[name].Ref()},
			Statistic:     jsii.String("Sum"),
			Period:        period,
		})
		expr += " + FILL(" + id + ", 0)"
	}
	notStarted := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(expr),
		UsingMetrics: &metrics,
		Label:        jsii.String("Rotations that could not be started"),
		Period:       period,
	})
	r.TriggerAlarm = notStarted.CreateAlarm(r.Construct, jsii.String("TriggerFailedAlarm"), &awscloudwatch.CreateAlarmOptions{
		AlarmDescription:   jsii.String("An amirotate schedule or tag-change rule could not start a rotation after its retries (see the Scheduler group's and the rules' metrics)."),
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	r.TriggerAlarm.AddAlarmAction(awscloudwatchactions.NewSnsAction(r.AlarmTopic))
}

// newAlarmTopic creates an SNS topic encrypted with its own KMS key (the
// AWS-managed SNS key cannot be used by CloudWatch alarms, whose service
// principal must be allowed to use the key), reachable only over TLS.
func newAlarmTopic(r *Rotation, email string) awssns.ITopic {
	key := awskms.NewKey(r.Construct, jsii.String("AlarmTopicKey"), &awskms.KeyProps{
		Description:       jsii.String("amirotate: encrypts the alarm topic"),
		EnableKeyRotation: jsii.Bool(true),
		// The key protects only messages in flight: nothing stays
		// encrypted with it once the stack is gone.
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
		PendingWindow: awscdk.Duration_Days(jsii.Number(7)),
	})
	key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AllowCloudWatchAlarmsToPublish"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
		Resources:  jsii.Strings("*"),
		Conditions: &map[string]interface{}{
			"StringEquals": map[string]interface{}{"aws:SourceAccount": stackOf(r.Construct).Account()},
		},
	}), jsii.Bool(false))
	topic := awssns.NewTopic(r.Construct, jsii.String("AlarmTopic"), &awssns.TopicProps{
		DisplayName: jsii.String("amirotate alarms"),
		MasterKey:   key,
		EnforceSSL:  jsii.Bool(true),
	})
	if email != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(email), nil))
	}
	return topic
}
