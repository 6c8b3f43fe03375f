package infra

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsscheduler"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsschedulertargets"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Placeholders EventBridge fills in when it starts an execution.
const (
	scheduledTimeVar = "<aws.scheduler.scheduled-time>"
	eventVar         = "<aws.events.event>"
)

// maxInputTemplate is EventBridge's limit on an input transformer's
// template, in characters.
const maxInputTemplate = 8192

// scheduleInput is the execution input of a scheduled rotation.
func scheduleInput(p rotation.Policy) (string, error) {
	pj, err := policyJSON(p)
	if err != nil {
		return "", err
	}
	return `{"policy":` + pj + `,"trigger":"` + rotation.TriggerSchedule + `","scheduledTime":"` + scheduledTimeVar + `"}`, nil
}

// tagChangeTemplate is the input transformer template of the tag-change
// rule: the policy, and the whole event (the instance is its resource).
func tagChangeTemplate(p rotation.Policy) (string, error) {
	pj, err := policyJSON(p)
	if err != nil {
		return "", err
	}
	t := `{"policy":` + pj + `,"trigger":"` + rotation.TriggerTagChange + `","event":` + eventVar + `}`
	if len(t) > maxInputTemplate {
		return "", fmt.Errorf("the tag-change input (%d characters) exceeds EventBridge's %d-character input template limit; shorten the policy (tags, shareWith)", len(t), maxInputTemplate)
	}
	return t, nil
}

// tagChangePattern matches a change of the rebuild tag on an EC2 instance
// that carries the policy's selector tags.
func tagChangePattern(p rotation.Policy) map[string]interface{} {
	tags := map[string]interface{}{}
	sel := selectorTags(p)
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		if sel[k] == "*" {
			tags[k] = []interface{}{map[string]interface{}{"exists": true}}
		} else {
			tags[k] = []interface{}{sel[k]}
		}
	}
	return map[string]interface{}{
		"source":      []interface{}{"aws.tag"},
		"detail-type": []interface{}{"Tag Change on Resource"},
		"detail": map[string]interface{}{
			"service":          []interface{}{"ec2"},
			"resource-type":    []interface{}{"instance"},
			"changed-tag-keys": []interface{}{rotation.TagRebuild},
			"tags":             tags,
		},
	}
}

// addTriggers creates, per policy, its schedule and its tag-change rule.
func addTriggers(r *Rotation, p *RotationProps) error {
	// One role for all tag-change rules: start executions of this state
	// machine, assumable by EventBridge on behalf of this account only.
	eventsRole := awsiam.NewRole(r.Construct, jsii.String("TagChangeRole"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("events.amazonaws.com"), &awsiam.ServicePrincipalOpts{
			Conditions: &map[string]interface{}{
				"StringEquals": map[string]interface{}{"aws:SourceAccount": stackOf(r.Construct).Account()},
			},
		}),
		Description: jsii.String("amirotate: start a rotation when an instance's rebuild tag changes"),
	})
	r.StateMachine.GrantStartExecution(eventsRole)
	// A group of its own, so the Scheduler metrics of the group (dropped
	// invocations, target errors) are this deployment's alone.
	r.ScheduleGroup = awsscheduler.NewScheduleGroup(r.Construct, jsii.String("Schedules"), &awsscheduler.ScheduleGroupProps{
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})

	for _, ps := range p.Policies {
		pol := ps.Policy
		id := "Policy" + constructID(pol.Name)

		input, err := scheduleInput(pol)
		if err != nil {
			return err
		}
		window := awsscheduler.TimeWindow_Off()
		if ps.Schedule.FlexibleWindowMinutes > 0 {
			window = awsscheduler.TimeWindow_Flexible(awscdk.Duration_Minutes(jsii.Number(float64(ps.Schedule.FlexibleWindowMinutes))))
		}
		tz := ps.Schedule.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		r.Schedules[pol.Name] = awsscheduler.NewSchedule(r.Construct, jsii.String(id+"Schedule"), &awsscheduler.ScheduleProps{
			Description:   jsii.String("amirotate: rotate policy " + pol.Name),
			ScheduleGroup: r.ScheduleGroup,
			Schedule:      awsscheduler.ScheduleExpression_Expression(jsii.String(ps.Schedule.Expression), awscdk.TimeZone_Of(jsii.String(tz))),
			TimeWindow:    window,
			Enabled:       jsii.Bool(!ps.Schedule.Disabled),
			Target: awsschedulertargets.NewStepFunctionsStartExecution(r.StateMachine, &awsschedulertargets.ScheduleTargetBaseProps{
				Input: awsscheduler.ScheduleTargetInput_FromText(jsii.String(input)),
				// Retry a failed start for up to an hour; a rotation that
				// late is better left to the next schedule or a person.
				MaxEventAge:   awscdk.Duration_Hours(jsii.Number(1)),
				RetryAttempts: jsii.Number(20),
			}),
		})

		template, err := tagChangeTemplate(pol)
		if err != nil {
			return err
		}
		r.TagChangeRules[pol.Name] = awsevents.NewCfnRule(r.Construct, jsii.String(id+"TagChangeRule"), &awsevents.CfnRuleProps{
			Description:  jsii.String("amirotate: rotate an instance of policy " + pol.Name + " when its amirotate:rebuild tag changes"),
			EventPattern: tagChangePattern(pol),
			State:        jsii.String("ENABLED"),
			Targets: &[]interface{}{&awsevents.CfnRule_TargetProperty{
				Id:      jsii.String("StartRotation"),
				Arn:     r.StateMachine.StateMachineArn(),
				RoleArn: eventsRole.RoleArn(),
				// The template uses only EventBridge's predefined
				// <aws.events.event>, so it needs no InputPathsMap.
				InputTransformer: &awsevents.CfnRule_InputTransformerProperty{
					InputTemplate: jsii.String(template),
				},
				RetryPolicy: &awsevents.CfnRule_RetryPolicyProperty{
					MaximumEventAgeInSeconds: jsii.Number(3600),
					MaximumRetryAttempts:     jsii.Number(20),
				},
			}},
		})
	}
	return nil
}

// constructID turns a policy name ([a-z0-9-]) into a construct id ("nightly-eu" → "NightlyEu").
func constructID(name string) string {
	var b strings.Builder
	for _, part := range strings.Split(name, "-") {
		b.WriteString(titleCase(part))
	}
	return b.String()
}

var (
	cronOrRate   = regexp.MustCompile(`^(cron\(([^()]+)\)|rate\((\d+) (minute|minutes|hour|hours|day|days)\))$`)
	maxWindowMin = 1440
)

// validateSchedule checks what CloudFormation would only reject at deploy
// time, with a message that says what to write instead.
func validateSchedule(s Schedule) error {
	m := cronOrRate.FindStringSubmatch(s.Expression)
	if m == nil {
		return fmt.Errorf("expression %q: want cron(minutes hours day-of-month month day-of-week year), e.g. \"cron(0 3 * * ? *)\", or rate(N minutes|hours|days)", s.Expression)
	}
	if m[2] != "" {
		fields := strings.Fields(m[2])
		if len(fields) != 6 {
			return fmt.Errorf("expression %q: a Scheduler cron has 6 fields (minutes hours day-of-month month day-of-week year), got %d", s.Expression, len(fields))
		}
		if fields[2] != "?" && fields[4] != "?" {
			return fmt.Errorf("expression %q: one of day-of-month and day-of-week must be \"?\"", s.Expression)
		}
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "Local" {
			return fmt.Errorf("timeZone %q: want an IANA time zone such as \"Europe/Berlin\" or \"UTC\"", s.TimeZone)
		}
	}
	if s.FlexibleWindowMinutes < 0 || s.FlexibleWindowMinutes > maxWindowMin {
		return fmt.Errorf("flexibleWindowMinutes %d: want 0 (off) to %d", s.FlexibleWindowMinutes, maxWindowMin)
	}
	return nil
}

// validatePolicy checks the policy with the domain's rules (the same the
// discover step applies to every execution), so a bad policy fails the
// synth instead of every scheduled run.
func validatePolicy(p rotation.Policy) error {
	return p.Validate()
}
