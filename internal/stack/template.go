// Package stack runs a synthesized amirotate template on this machine: the
// local EC2 (internal/ec2sim) behind one endpoint that also answers the
// Step Functions API for the template's state machine (executed by
// internal/localrun with the template's own definition and functions), the
// template's Scheduler schedules on the simulator's clock, and its
// EventBridge rules on the instances' tag changes.
package stack

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/eventpattern"
	"github.com/amirotate/amirotate/statemachine"
)

// Template is what the local stack reads from a synthesized template.
type Template struct {
	// Raw is the template itself (IAM reads its roles).
	Raw          []byte
	StackName    string
	Account      string
	Region       string
	StateMachine StateMachine
	// Functions by logical id.
	Functions map[string]Function
	Schedules []Schedule
	Rules     []Rule
	// Outputs are the stack's outputs, resolved.
	Outputs map[string]string
}

// StateMachine is the template's state machine.
type StateMachine struct {
	LogicalID string
	ARN       string
	Name      string
	// Definition has its substitutions resolved: Lambda ARNs name the
	// local functions.
	Definition []byte
	// Stale: the definition is not this amirotate's statemachine/rotation.asl.json
	// with the same substitutions (synthesized by another version: the
	// functions here may not fit it).
	Stale bool
}

// Function is one Lambda function of the template.
type Function struct {
	LogicalID string
	ARN       string
	// Step is the handler it runs (from its role's amirotate:step tag).
	Step string
	// Env is the environment the template gives it.
	Env map[string]string
}

// Schedule is an EventBridge Scheduler schedule that starts the state machine.
type Schedule struct {
	LogicalID  string
	ARN        string
	Expression string
	TimeZone   string
	Enabled    bool
	// Input is the target's input, with the Scheduler's context attributes
	// (<aws.scheduler.scheduled-time>, ...) still in it.
	Input string
	// RoleID is the logical id of the role the Scheduler assumes.
	RoleID string
}

// Rule is an EventBridge rule whose target starts the state machine.
type Rule struct {
	LogicalID string
	ARN       string
	Name      string
	Pattern   *eventpattern.Pattern
	Enabled   bool
	// InputTemplate and InputPaths are the target's input transformer
	// (empty template: the whole event is the input).
	InputTemplate string
	InputPaths    map[string]string
	RoleID        string
}

type cfnResource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
}

// ParseTemplate reads a template synthesized by infra for stackName in
// account and region.
func ParseTemplate(data []byte, stackName, account, region string) (*Template, error) {
	var doc struct {
		Resources map[string]cfnResource `json:"Resources"`
		Outputs   map[string]struct {
			Value any `json:"Value"`
		} `json:"Outputs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading the template: %w", err)
	}
	t := &Template{Raw: data, StackName: stackName, Account: account, Region: region,
		Functions: map[string]Function{}, Outputs: map[string]string{}}
	ids := make([]string, 0, len(doc.Resources))
	for id := range doc.Resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	// What Ref and GetAtt of the resources the triggers and outputs name
	// resolve to.
	refs := map[string]string{}
	steps := map[string]string{} // role logical id → step
	for _, id := range ids {
		r := doc.Resources[id]
		switch r.Type {
		case "AWS::Lambda::Function":
			arn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", region, account, id)
			refs[id], refs[id+".Arn"] = id, arn
		case "AWS::StepFunctions::StateMachine":
			if t.StateMachine.LogicalID != "" {
				return nil, fmt.Errorf("the template has two state machines, %s and %s", t.StateMachine.LogicalID, id)
			}
			arn := fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:%s", region, account, id)
			t.StateMachine = StateMachine{LogicalID: id, ARN: arn, Name: id}
			refs[id], refs[id+".Arn"], refs[id+".Name"] = arn, arn, id
		case "AWS::Scheduler::ScheduleGroup":
			refs[id] = id
			refs[id+".Arn"] = fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule-group/%s", region, account, id)
		case "AWS::SNS::Topic":
			refs[id] = fmt.Sprintf("arn:aws:sns:%s:%s:%s", region, account, id)
		case "AWS::IAM::Role":
			refs[id+".Arn"] = fmt.Sprintf("arn:aws:iam::%s:role%s%s", account, pathOf(r), id)
			for _, tag := range list(r.Properties["Tags"]) {
				if m, ok := tag.(map[string]any); ok && m["Key"] == ec2x.RoleStepTag {
					steps[id], _ = m["Value"].(string)
				}
			}
		}
	}
	if t.StateMachine.LogicalID == "" {
		return nil, fmt.Errorf("the template has no AWS::StepFunctions::StateMachine: is it amirotate's (make synth writes cdk.out/Amirotate.template.json)?")
	}
	rv := values{account: account, region: region, refs: refs}

	for _, id := range ids {
		r := doc.Resources[id]
		switch r.Type {
		case "AWS::Lambda::Function":
			f := Function{LogicalID: id, ARN: refs[id+".Arn"], Env: map[string]string{}}
			role := refOf(r.Properties["Role"])
			f.Step = steps[role]
			if f.Step == "" {
				return nil, fmt.Errorf("function %s: its role %s has no %s tag, so the local stack cannot tell which step it runs", id, role, ec2x.RoleStepTag)
			}
			if env, ok := r.Properties["Environment"].(map[string]any); ok {
				vars, _ := env["Variables"].(map[string]any)
				for k, v := range vars {
					s, err := rv.str(v)
					if err != nil {
						return nil, fmt.Errorf("function %s, environment %s: %w", id, k, err)
					}
					f.Env[k] = s
				}
			}
			t.Functions[id] = f
		case "AWS::StepFunctions::StateMachine":
			def, err := rv.str(r.Properties["DefinitionString"])
			if err != nil {
				return nil, fmt.Errorf("state machine %s: DefinitionString: %w", id, err)
			}
			subs := map[string]string{}
			if m, ok := r.Properties["DefinitionSubstitutions"].(map[string]any); ok {
				for k, v := range m {
					if subs[k], err = rv.str(v); err != nil {
						return nil, fmt.Errorf("state machine %s: substitution %s: %w", id, k, err)
					}
				}
			}
			// Step Functions replaces ${key} for each substitution
			// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-stepfunctions-statemachine.html#cfn-stepfunctions-statemachine-definitionsubstitutions).
			for k, v := range subs {
				def = strings.ReplaceAll(def, "${"+k+"}", v)
			}
			t.StateMachine.Definition = []byte(def)
			ours, err := statemachine.Render(subs)
			t.StateMachine.Stale = err != nil || !sameJSON(ours, t.StateMachine.Definition)
		case "AWS::Scheduler::Schedule":
			target, _ := r.Properties["Target"].(map[string]any)
			if arn, _ := rv.str(target["Arn"]); arn != t.StateMachine.ARN {
				continue
			}
			s := Schedule{LogicalID: id, Enabled: r.Properties["State"] != "DISABLED",
				RoleID: refOf(target["RoleArn"])}
			group, _ := rv.str(r.Properties["GroupName"])
			if group == "" {
				group = "default"
			}
			s.ARN = fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule/%s/%s", region, account, group, id)
			s.Expression, _ = r.Properties["ScheduleExpression"].(string)
			s.TimeZone, _ = r.Properties["ScheduleExpressionTimezone"].(string)
			if s.TimeZone == "" {
				s.TimeZone = "UTC"
			}
			s.Input, _ = target["Input"].(string)
			t.Schedules = append(t.Schedules, s)
		case "AWS::Events::Rule":
			pattern, err := json.Marshal(r.Properties["EventPattern"])
			if err != nil {
				return nil, err
			}
			for _, tg := range list(r.Properties["Targets"]) {
				target, _ := tg.(map[string]any)
				if arn, _ := rv.str(target["Arn"]); arn != t.StateMachine.ARN {
					continue
				}
				p, err := eventpattern.Parse(pattern)
				if err != nil {
					return nil, fmt.Errorf("rule %s: %w", id, err)
				}
				rule := Rule{LogicalID: id, Name: id, Pattern: p, Enabled: r.Properties["State"] != "DISABLED",
					ARN: fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", region, account, id), RoleID: refOf(target["RoleArn"])}
				if it, ok := target["InputTransformer"].(map[string]any); ok {
					rule.InputTemplate, _ = it["InputTemplate"].(string)
					if paths, ok := it["InputPathsMap"].(map[string]any); ok {
						rule.InputPaths = map[string]string{}
						for k, v := range paths {
							rule.InputPaths[k] = fmt.Sprint(v)
						}
					}
				}
				t.Rules = append(t.Rules, rule)
			}
		}
	}
	if len(t.StateMachine.Definition) == 0 {
		return nil, fmt.Errorf("state machine %s has no DefinitionString", t.StateMachine.LogicalID)
	}
	for name, o := range doc.Outputs {
		v, err := rv.str(o.Value)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		t.Outputs[name] = v
	}
	return t, nil
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TriggerRoles returns the logical ids of the roles the triggers assume.
func (t *Template) TriggerRoles() []string {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, s := range t.Schedules {
		add(s.RoleID)
	}
	for _, r := range t.Rules {
		add(r.RoleID)
	}
	sort.Strings(out)
	return out
}

func pathOf(r cfnResource) string {
	if p, ok := r.Properties["Path"].(string); ok && p != "" {
		return p
	}
	return "/"
}

func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// refOf is the logical id a {"Ref": id} or {"Fn::GetAtt": [id, attr]} names.
func refOf(v any) string {
	m, _ := v.(map[string]any)
	if id, ok := m["Ref"].(string); ok {
		return id
	}
	if ga := list(m["Fn::GetAtt"]); len(ga) > 0 {
		return fmt.Sprint(ga[0])
	}
	return ""
}

// values resolves the intrinsic functions of the properties the local
// stack reads.
type values struct {
	account, region string
	refs            map[string]string
}

func (rv values) str(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case map[string]any:
		if len(x) != 1 {
			break
		}
		if id, ok := x["Ref"].(string); ok {
			switch id {
			case "AWS::Region":
				return rv.region, nil
			case "AWS::AccountId":
				return rv.account, nil
			case "AWS::Partition":
				return "aws", nil
			case "AWS::URLSuffix":
				return "amazonaws.com", nil
			}
			if s, ok := rv.refs[id]; ok {
				return s, nil
			}
			return "", fmt.Errorf("Ref %s: not a resource the local stack runs", id)
		}
		if ga := list(x["Fn::GetAtt"]); len(ga) == 2 {
			key := fmt.Sprint(ga[0]) + "." + fmt.Sprint(ga[1])
			if s, ok := rv.refs[key]; ok {
				return s, nil
			}
			return "", fmt.Errorf("Fn::GetAtt %s: not an attribute the local stack knows", key)
		}
		if j := list(x["Fn::Join"]); len(j) == 2 {
			var parts []string
			for _, p := range list(j[1]) {
				s, err := rv.str(p)
				if err != nil {
					return "", err
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, fmt.Sprint(j[0])), nil
		}
	}
	return "", fmt.Errorf("%v: not a value the local stack can resolve", v)
}
