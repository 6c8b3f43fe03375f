// Package infra is amirotate's AWS CDK app in Go: the Rotation construct
// (functions, state machine, triggers, alarm, least-privilege IAM), the stack
// around it and the deployment file it is configured from.
//
// infra never imports handler code: what each function may call is listed
// here, explicitly, and the tests compare it with internal/ec2x.Actions, the
// list derived from the client interfaces the handlers use.
package infra

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsscheduler"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/statemachine"
)

// DefaultAssetDir holds one folder per function with its `bootstrap` binary
// (what `make build` writes).
const DefaultAssetDir = "dist"

// RotationProps configures a Rotation.
type RotationProps struct {
	// Policies to rotate, each with its schedule. At least one.
	Policies []PolicySchedule
	// AlarmTopic receives the failed-rotation alarm. When nil, a topic is
	// created (KMS-encrypted, TLS only), with AlarmEmail subscribed if set.
	AlarmTopic awssns.ITopic
	// AlarmEmail subscribes an address to the created topic; it cannot be
	// combined with AlarmTopic (subscribe to your own topic yourself).
	AlarmEmail string
	// LogRetention of the functions' and the state machine's log groups.
	// Default: three months.
	LogRetention awslogs.RetentionDays
	// CopyKMSKeyArns are the KMS keys copies may be encrypted with (the keys
	// of copyTo[].kmsKeyId, as key ARNs) and the keys of encrypted source
	// images. The copy function may use only these, and only through EC2.
	CopyKMSKeyArns []string
	// AssetDir holds <name>/bootstrap for every function. Default: "dist".
	AssetDir string
	// Definition is the state machine's ASL with ${...} placeholders.
	// Default: statemachine.Template, the file the local runner executes.
	Definition []byte
}

// PolicySchedule is one policy and when it runs.
type PolicySchedule struct {
	Policy   rotation.Policy
	Schedule Schedule
}

// Schedule is an EventBridge Scheduler recurrence.
type Schedule struct {
	// Expression is "cron(minutes hours day-of-month month day-of-week year)"
	// or "rate(value unit)", e.g. "cron(0 3 * * ? *)".
	Expression string `json:"expression"`
	// TimeZone the cron expression is read in (IANA name, e.g.
	// "Europe/Berlin"; default "UTC"), so 03:00 stays 03:00 across daylight
	// saving time.
	TimeZone string `json:"timeZone,omitempty"`
	// FlexibleWindowMinutes lets Scheduler start up to this many minutes
	// late, spreading many policies' starts (0 = exactly on time, max 1440).
	FlexibleWindowMinutes int `json:"flexibleWindowMinutes,omitempty"`
	// Disabled creates the schedule switched off (tag-change and manual
	// runs still work).
	Disabled bool `json:"disabled,omitempty"`
}

// Rotation is amirotate deployed: one function per step, the state machine
// that drives them, a schedule and a tag-change rule per policy, and an alarm
// on failed or timed-out rotations.
type Rotation struct {
	constructs.Construct
	StateMachine awsstepfunctions.StateMachine
	// Functions by step name (ec2x.Steps).
	Functions map[string]awslambda.Function
	// Schedules and TagChangeRules by policy name.
	Schedules      map[string]awsscheduler.Schedule
	ScheduleGroup  awsscheduler.ScheduleGroup
	TagChangeRules map[string]awsevents.CfnRule
	AlarmTopic     awssns.ITopic
	// Alarm fires on failed or timed-out rotations; TriggerAlarm when a
	// schedule or rule could not start one.
	Alarm        awscloudwatch.Alarm
	TriggerAlarm awscloudwatch.Alarm
	// Dashboard shows the report step's metrics per policy; by policy name,
	// FailedImagesAlarms fire on a failed image or copy, InstanceDropAlarms
	// on a drop in instances targeted.
	Dashboard          awscloudwatch.Dashboard
	FailedImagesAlarms map[string]awscloudwatch.Alarm
	InstanceDropAlarms map[string]awscloudwatch.Alarm
}

// NewRotation validates props and builds the construct. Problems with props
// come back as one error listing all of them, before anything is created,
// instead of a panic from inside the construct tree.
func NewRotation(scope constructs.Construct, id string, props *RotationProps) (*Rotation, error) {
	if props == nil {
		return nil, errors.New("rotation props: missing")
	}
	p := withDefaults(*props)
	home := ""
	if region := awscdk.Stack_Of(scope).Region(); !*awscdk.Token_IsUnresolved(region) {
		home = *region
	}
	if err := validate(&p, home); err != nil {
		return nil, err
	}

	r := &Rotation{
		Construct:      constructs.NewConstruct(scope, jsii.String(id)),
		Functions:      map[string]awslambda.Function{},
		Schedules:      map[string]awsscheduler.Schedule{},
		TagChangeRules: map[string]awsevents.CfnRule{},
	}
	perms := newPermissionContext(r, &p)
	for _, spec := range functionSpecs {
		r.Functions[spec.Name] = newFunction(r, spec, &p, perms)
	}
	r.StateMachine = newStateMachine(r, &p, p.Definition)
	if err := addTriggers(r, &p); err != nil {
		return nil, err
	}
	addAlarm(r, &p)
	addDashboard(r, &p)
	addSuppressions(r)
	return r, nil
}

// withDefaults fills in the optional props.
func withDefaults(p RotationProps) RotationProps {
	if p.AssetDir == "" {
		p.AssetDir = DefaultAssetDir
	}
	if p.Definition == nil {
		p.Definition = statemachine.Template
	}
	if p.LogRetention == "" {
		p.LogRetention = awslogs.RetentionDays_THREE_MONTHS
	}
	return p
}

// validate checks props (with defaults applied); home is the stack's region
// when known at synth time.
func validate(p *RotationProps, home string) error {
	var errs []error
	if len(p.Policies) == 0 {
		errs = append(errs, errors.New("policies: at least one policy is required"))
	}
	seen := map[string]bool{}
	for i, ps := range p.Policies {
		name := ps.Policy.Name
		field := fmt.Sprintf("policies[%d] (%s)", i, name)
		if seen[name] {
			errs = append(errs, fmt.Errorf("%s: duplicate policy name; names identify schedules, rules and tags", field))
		}
		seen[name] = true
		if err := validatePolicy(ps.Policy); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		if home != "" {
			if err := ps.Policy.CheckHome(home); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field, err))
			}
		}
		if _, err := tagChangeTemplate(ps.Policy); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		if err := validateSchedule(ps.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("%s: schedule: %w", field, err))
		}
		for j, c := range ps.Policy.CopyTo {
			if c.KMSKeyID != "" && len(p.CopyKMSKeyArns) == 0 {
				errs = append(errs, fmt.Errorf("%s: copyTo[%d].kmsKeyId is set but CopyKMSKeyArns is empty: list the key's ARN so the copy function may use it", field, j))
			}
		}
	}
	if p.AlarmTopic != nil && p.AlarmEmail != "" {
		errs = append(errs, errors.New("alarmEmail: set either an alarm topic or an e-mail address for a created topic, not both"))
	}
	for i, arn := range p.CopyKMSKeyArns {
		if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":key/") {
			errs = append(errs, fmt.Errorf("copyKmsKeyArns[%d]: %q is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); IAM authorizes keys by ARN, not alias", i, arn))
		}
	}
	var missing []string
	for _, spec := range functionSpecs {
		if _, err := os.Stat(filepath.Join(p.AssetDir, spec.Name, "bootstrap")); err != nil {
			missing = append(missing, spec.Name)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("functions %s: no %s: build them first (make build)",
			strings.Join(missing, ", "), filepath.Join(p.AssetDir, "<name>", "bootstrap")))
	}
	if missing := missingSubstitutions(p.Definition); len(missing) > 0 {
		errs = append(errs, fmt.Errorf("state machine definition: no value for ${%s}", strings.Join(missing, "}, ${")))
	} else if rendered, err := statemachine.RenderTemplate(p.Definition, statemachine.LocalARNs("us-east-1", "123456789012")); err != nil {
		errs = append(errs, fmt.Errorf("state machine definition: %w", err))
	} else if err := statemachine.Validate(rendered); err != nil {
		// Checked rendered with stand-in ARNs: the structure is what counts.
		errs = append(errs, fmt.Errorf("state machine definition: %w", err))
	}
	return errors.Join(errs...)
}

// policyJSON is the policy as executions receive it.
func policyJSON(p rotation.Policy) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encoding policy %s: %w", p.Name, err)
	}
	return string(b), nil
}

// selectorTags is the policy's instance selector with the documented default
// (instances tagged amirotate:policy=<name>).
func selectorTags(p rotation.Policy) map[string]string {
	return p.WithDefaults().Selector.Tags
}

// copyRegions are the regions any policy copies into, sorted.
func copyRegions(policies []PolicySchedule) []string {
	set := map[string]bool{}
	for _, ps := range policies {
		for _, c := range ps.Policy.CopyTo {
			set[c.Region] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// sortedKeys returns m's keys in order, so templates are deterministic.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stackOf is the stack a construct lives in.
func stackOf(c constructs.Construct) awscdk.Stack { return awscdk.Stack_Of(c) }
