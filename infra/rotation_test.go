package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/statemachine"
)

func TestRotation_ResourceCounts(t *testing.T) {
	synth(t)
	for _, tc := range []struct {
		stack string
		tmpl  assertions.Template
		want  map[string]float64
	}{
		{"Full", synthed.fullTmpl, map[string]float64{
			"AWS::Lambda::Function":            float64(len(ec2x.Steps)),
			"AWS::Logs::LogGroup":              float64(len(ec2x.Steps) + 1), // one per function + the state machine's
			"AWS::StepFunctions::StateMachine": 1,
			"AWS::Scheduler::Schedule":         2,
			"AWS::Events::Rule":                2,
			"AWS::CloudWatch::Alarm":           6, // 2 + failed images and instance drop per policy
			"AWS::CloudWatch::Dashboard":       1,
			"AWS::Scheduler::ScheduleGroup":    1,
			"AWS::SNS::Topic":                  1,
			"AWS::SNS::Subscription":           1,
			"AWS::KMS::Key":                    1,
			"AWS::Lambda::EventInvokeConfig":   0,
		}},
		{"Agnostic", synthed.agnoTmpl, map[string]float64{
			"AWS::Lambda::Function":      float64(len(ec2x.Steps)),
			"AWS::Scheduler::Schedule":   1,
			"AWS::Events::Rule":          1,
			"AWS::CloudWatch::Alarm":     4,
			"AWS::CloudWatch::Dashboard": 1,
			"AWS::SNS::Topic":            0, // the given topic is used
			"AWS::KMS::Key":              0,
		}},
	} {
		t.Run(tc.stack, func(t *testing.T) {
			for typ, n := range tc.want {
				tc.tmpl.ResourceCountIs(jsii.String(typ), jsii.Number(n))
			}
		})
	}
}

func TestRotation_FunctionProperties(t *testing.T) {
	synth(t)
	synthed.fullTmpl.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), &map[string]any{
		"Runtime":       "provided.al2023",
		"Architectures": []any{"arm64"},
		"Handler":       "bootstrap",
		"LoggingConfig": map[string]any{
			"LogFormat": "JSON",
			"LogGroup":  assertions.Match_AnyValue(),
		},
		"TracingConfig": map[string]any{"Mode": "Active"},
	})
	synthed.fullTmpl.AllResourcesProperties(jsii.String("AWS::Logs::LogGroup"), &map[string]any{
		"RetentionInDays": 30,
	})
	byStep := functionsByStep(t, synthed.fullJSON)
	fns := resources(synthed.fullJSON, "AWS::Lambda::Function")
	for _, spec := range functionSpecs {
		p := props(fns[byStep[spec.Name]])
		if got := p["MemorySize"].(float64); got != spec.MemoryMB {
			t.Errorf("%s: MemorySize %v, want %v", spec.Name, got, spec.MemoryMB)
		}
		// Every function accepts exactly the stack's policies.
		var policies []rotation.Policy
		for _, ps := range testProps(t).Policies {
			policies = append(policies, ps.Policy)
		}
		env, _ := p["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		pins, err := rotation.ParsePins(fmt.Sprint(vars[rotation.PinsEnv]))
		if err != nil || len(pins) != len(policies) {
			t.Errorf("%s: %s = %v (%v); want the digests of the %d policies", spec.Name, rotation.PinsEnv, vars[rotation.PinsEnv], err, len(policies))
		}
		for _, pol := range policies {
			if pins.Check(pol) != nil {
				t.Errorf("%s: policy %s is not pinned", spec.Name, pol.Name)
			}
		}
		// Step Functions gives each task 900 s; Lambda must time out first.
		if got := p["Timeout"].(float64); got <= 0 || got >= 900 {
			t.Errorf("%s: Timeout %v s, want below the state machine's 900 s task timeout", spec.Name, got)
		}
	}
}

func TestRotation_FunctionsMatchStateMachine(t *testing.T) {
	var names []string
	for _, spec := range functionSpecs {
		names = append(names, spec.Name)
	}
	if !slices.Equal(names, ec2x.Steps) {
		t.Errorf("functions %v, want one per step in order: %v", names, ec2x.Steps)
	}
	if missing := missingSubstitutions(statemachine.Template); len(missing) > 0 {
		t.Errorf("definition placeholders without a value: %v", missing)
	}
}

func TestRotation_StateMachine(t *testing.T) {
	synth(t)
	subs := map[string]any{statemachine.EventBusKey: "default"}
	for _, f := range ec2x.Steps {
		subs[statemachine.FunctionKey(f)] = map[string]any{"Fn::GetAtt": []any{assertions.Match_AnyValue(), "Arn"}}
	}
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::StepFunctions::StateMachine"), &map[string]any{
		"StateMachineType":        "STANDARD",
		"DefinitionString":        string(statemachine.Template),
		"DefinitionSubstitutions": subs,
		"LoggingConfiguration": map[string]any{
			"Level":                "ALL",
			"IncludeExecutionData": false,
			"Destinations":         assertions.Match_AnyValue(),
		},
		"TracingConfiguration": map[string]any{"Enabled": true},
	})
}

func TestRotation_Schedules(t *testing.T) {
	synth(t)
	schedules := resources(synthed.fullJSON, "AWS::Scheduler::Schedule")
	want := map[string]struct {
		expr, tz string
		window   map[string]any
	}{
		"nightly":    {"cron(0 3 * * ? *)", "Europe/Berlin", map[string]any{"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15.0}},
		"weekly-web": {"cron(30 2 ? * SUN *)", "UTC", map[string]any{"Mode": "OFF"}},
	}
	seen := map[string]bool{}
	for _, res := range schedules {
		p := props(res)
		target := p["Target"].(map[string]any)
		input := target["Input"].(string)
		// The input must be what the domain accepts once Scheduler fills in
		// the scheduled time.
		raw := strings.Replace(input, scheduledTimeVar, "2026-11-25T02:00:00Z", 1)
		in, err := rotation.ParseInput([]byte(raw), time.Date(2026, 11, 25, 2, 0, 30, 0, time.UTC))
		if err != nil {
			t.Fatalf("schedule input %s: %v", input, err)
		}
		name := in.Policy.Name
		seen[name] = true
		w, ok := want[name]
		if !ok {
			t.Fatalf("schedule for unexpected policy %q", name)
		}
		t.Run(name, func(t *testing.T) {
			if p["ScheduleExpression"] != w.expr || p["ScheduleExpressionTimezone"] != w.tz {
				t.Errorf("expression %v in %v, want %s in %s", p["ScheduleExpression"], p["ScheduleExpressionTimezone"], w.expr, w.tz)
			}
			if got, _ := json.Marshal(p["FlexibleTimeWindow"]); string(got) != mustJSON(w.window) {
				t.Errorf("window %s, want %s", got, mustJSON(w.window))
			}
			if p["State"] != "ENABLED" {
				t.Errorf("state %v", p["State"])
			}
			if in.Rotation.Trigger != rotation.TriggerSchedule || in.Rotation.ID != "20261125T0200Z" {
				t.Errorf("rotation %+v, want a schedule rotation 20261125T0200Z", in.Rotation)
			}
			var shape map[string]any
			if err := json.Unmarshal([]byte(input), &shape); err != nil {
				t.Fatal(err)
			}
			if shape["scheduledTime"] != "<aws.scheduler.scheduled-time>" || shape["trigger"] != "schedule" {
				t.Errorf("input %s: want trigger schedule and scheduledTime <aws.scheduler.scheduled-time>", input)
			}
			if ref, _ := target["Arn"].(map[string]any)["Ref"].(string); !strings.HasPrefix(ref, "RotationStateMachine") {
				t.Errorf("target %v, want the state machine", target["Arn"])
			}
		})
	}
	if len(seen) != len(want) {
		t.Errorf("schedules for %v, want %d", seen, len(want))
	}
}

func TestRotation_TagChangeRules(t *testing.T) {
	synth(t)
	// A "Tag Change on Resource" event as EventBridge delivers it.
	event, err := os.ReadFile("testdata/tag-change-event.json")
	if err != nil {
		t.Fatal(err)
	}
	wantTags := map[string]string{
		"nightly":    `{"amirotate:policy":["nightly"]}`,
		"weekly-web": `{"Env":[{"exists":true}],"Role":["web"]}`,
	}
	rules := resources(synthed.fullJSON, "AWS::Events::Rule")
	if len(rules) != len(wantTags) {
		t.Fatalf("%d rules, want %d", len(rules), len(wantTags))
	}
	for _, res := range rules {
		p := props(res)
		target := asList(p["Targets"])[0].(map[string]any)
		tmpl := target["InputTransformer"].(map[string]any)["InputTemplate"].(string)
		if _, ok := target["InputTransformer"].(map[string]any)["InputPathsMap"]; ok {
			t.Errorf("InputPathsMap set; the template only uses <aws.events.event>")
		}
		// EventBridge replaces <aws.events.event> with the whole event.
		raw := strings.Replace(tmpl, eventVar, string(event), 1)
		in, err := rotation.ParseInput([]byte(raw), time.Date(2026, 11, 25, 14, 42, 0, 0, time.UTC))
		if err != nil {
			t.Fatalf("tag-change input: %v\n%s", err, raw)
		}
		name := in.Policy.Name
		t.Run(name, func(t *testing.T) {
			if in.Rotation.Trigger != rotation.TriggerTagChange || len(in.InstanceIDs) != 1 || in.InstanceIDs[0] != "i-0123456789abcdef0" {
				t.Errorf("parsed %+v %v, want a tag-change rotation of i-0123456789abcdef0", in.Rotation, in.InstanceIDs)
			}
			pattern := p["EventPattern"].(map[string]any)
			detail := pattern["detail"].(map[string]any)
			checks := map[string]string{
				"source":                  mustJSON(pattern["source"]),
				"detail-type":             mustJSON(pattern["detail-type"]),
				"detail.service":          mustJSON(detail["service"]),
				"detail.resource-type":    mustJSON(detail["resource-type"]),
				"detail.changed-tag-keys": mustJSON(detail["changed-tag-keys"]),
				"detail.tags":             mustJSON(detail["tags"]),
			}
			want := map[string]string{
				"source":                  `["aws.tag"]`,
				"detail-type":             `["Tag Change on Resource"]`,
				"detail.service":          `["ec2"]`,
				"detail.resource-type":    `["instance"]`,
				"detail.changed-tag-keys": `["amirotate:rebuild"]`,
				"detail.tags":             wantTags[name],
			}
			for k, v := range want {
				if checks[k] != v {
					t.Errorf("pattern %s = %s, want %s", k, checks[k], v)
				}
			}
			if p["State"] != "ENABLED" {
				t.Errorf("state %v", p["State"])
			}
		})
	}
}

func TestRotation_Alarm(t *testing.T) {
	synth(t)
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), &map[string]any{
		"ComparisonOperator": "GreaterThanOrEqualToThreshold",
		"Threshold":          1,
		"EvaluationPeriods":  1,
		"TreatMissingData":   "notBreaching",
		"AlarmActions":       []any{map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RotationAlarmTopic"))}},
		"Metrics": assertions.Match_ArrayWith(&[]any{
			assertions.Match_ObjectLike(&map[string]any{"Expression": "FILL(failed, 0) + FILL(timedOut, 0)"}),
			assertions.Match_ObjectLike(&map[string]any{"Id": "failed", "MetricStat": assertions.Match_ObjectLike(&map[string]any{
				"Metric": assertions.Match_ObjectLike(&map[string]any{"MetricName": "ExecutionsFailed", "Namespace": "AWS/States"}),
			})}),
			assertions.Match_ObjectLike(&map[string]any{"Id": "timedOut", "MetricStat": assertions.Match_ObjectLike(&map[string]any{
				"Metric": assertions.Match_ObjectLike(&map[string]any{"MetricName": "ExecutionsTimedOut"}),
			})}),
		}),
	})
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::SNS::Topic"), &map[string]any{
		"KmsMasterKeyId": assertions.Match_AnyValue(),
	})
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), &map[string]any{
		"Protocol": "email", "Endpoint": "ops@example.com",
	})
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::KMS::Key"), &map[string]any{"EnableKeyRotation": true})
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), &map[string]any{
		"AlarmActions": []any{map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RotationAlarmTopic"))}},
		"Metrics": assertions.Match_ArrayWith(&[]any{
			assertions.Match_ObjectLike(&map[string]any{"Expression": "FILL(dropped, 0) + FILL(rule0, 0) + FILL(rule1, 0)"}),
			assertions.Match_ObjectLike(&map[string]any{"Id": "dropped", "MetricStat": assertions.Match_ObjectLike(&map[string]any{
				"Metric": assertions.Match_ObjectLike(&map[string]any{"MetricName": "InvocationDroppedCount", "Namespace": "AWS/Scheduler"}),
			})}),
			assertions.Match_ObjectLike(&map[string]any{"Id": "rule0", "MetricStat": assertions.Match_ObjectLike(&map[string]any{
				"Metric": assertions.Match_ObjectLike(&map[string]any{"MetricName": "FailedInvocations", "Namespace": "AWS/Events"}),
			})}),
		}),
	})
	// The given topic receives the alarms in the agnostic stack.
	synthed.agnoTmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), &map[string]any{
		"AlarmActions": []any{"arn:aws:sns:us-east-1:111122223333:ops"},
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// The report step's metrics (internal/rotation's names): a dashboard row and
// two alarms per policy, failed images or copies and a drop in instances
// targeted, sent to the alarm topic.
func TestRotation_DashboardAndMetricAlarms(t *testing.T) {
	synth(t)
	for _, policy := range []string{"nightly", "weekly-web"} {
		metric := func(id, name, stat string) any {
			return assertions.Match_ObjectLike(&map[string]any{"Id": id, "MetricStat": assertions.Match_ObjectLike(&map[string]any{
				"Metric": map[string]any{"MetricName": name, "Namespace": rotation.MetricsNamespace,
					"Dimensions": []any{map[string]any{"Name": rotation.MetricsDimension, "Value": policy}}},
				"Stat": stat,
			})})
		}
		topic := []any{map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RotationAlarmTopic"))}}
		synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), &map[string]any{
			"ComparisonOperator": "GreaterThanOrEqualToThreshold",
			"Threshold":          1,
			"TreatMissingData":   "notBreaching",
			"AlarmActions":       topic,
			"Metrics": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{"Expression": "FILL(images, 0) + FILL(copies, 0)"}),
				// ArrayWith keeps order: CDK lists the metrics by id.
				metric("copies", rotation.MetricCopiesFailed, "Sum"),
				metric("images", rotation.MetricImagesFailed, "Sum"),
			}),
		})
		synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), &map[string]any{
			"ComparisonOperator": "LessThanOrEqualToThreshold",
			"Threshold":          -InstanceDropPercent,
			"EvaluationPeriods":  2,
			"DatapointsToAlarm":  1,
			"AlarmActions":       topic,
			"Metrics": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{"Expression": "100 * DIFF(targeted) / (targeted - DIFF(targeted))"}),
				metric("targeted", rotation.MetricInstancesTargeted, "Maximum"),
			}),
		})
	}
	// The dashboard graphs every metric the report step writes, per policy.
	var body string
	for _, res := range synthed.fullJSON["Resources"].(map[string]any) {
		r := res.(map[string]any)
		if r["Type"] == "AWS::CloudWatch::Dashboard" {
			body = mustJSON(r["Properties"].(map[string]any)["DashboardBody"])
		}
	}
	for _, name := range []string{rotation.MetricInstancesTargeted, rotation.MetricImagesCreated, rotation.MetricImagesFailed,
		rotation.MetricCopiesCreated, rotation.MetricCopiesFailed, rotation.MetricImagesDeleted, rotation.MetricSnapshotsDeleted,
		rotation.MetricRotationDuration, rotation.MetricSnapshotBytesFreed, "nightly", "weekly-web"} {
		if !strings.Contains(body, name) {
			t.Errorf("the dashboard lacks %s", name)
		}
	}
}
