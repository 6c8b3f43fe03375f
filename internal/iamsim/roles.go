package iamsim

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/amirotate/amirotate/internal/ec2sim"
)

// ParseRoles reads the roles of a template named by logical id (a
// schedule's or a rule's role, say), keyed by that id, with the policies
// attached to them. refs resolves the Refs and GetAtts of the stack's
// resources the policies name ("RotationStateMachine9EDA2FC4" → its ARN).
func ParseRoles(data []byte, account, region string, ids []string, refs map[string]string) (Roles, error) {
	var tmpl struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(data, &tmpl); err != nil {
		return nil, fmt.Errorf("reading the template: %w", err)
	}
	rv := resolver{account: account, region: region, refs: refs}
	roles := Roles{}
	for _, id := range ids {
		res, ok := tmpl.Resources[id]
		if !ok || res.Type != "AWS::IAM::Role" {
			return nil, fmt.Errorf("the template has no role %s", id)
		}
		path, _ := res.Properties["Path"].(string)
		if path == "" {
			path = "/"
		}
		role := &Role{LogicalID: id, Path: path, Step: id}
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
		roles[id] = role
	}
	names := make([]string, 0, len(tmpl.Resources))
	for id := range tmpl.Resources {
		names = append(names, id)
	}
	sort.Strings(names)
	for _, id := range names {
		res := tmpl.Resources[id]
		if res.Type != "AWS::IAM::Policy" {
			continue
		}
		for _, r := range asList(res.Properties["Roles"]) {
			ref, _ := r.(map[string]any)
			role := roles[fmt.Sprint(ref["Ref"])]
			if role == nil {
				continue
			}
			doc, err := rv.document(res.Properties["PolicyDocument"])
			if err != nil {
				return nil, fmt.Errorf("policy %s: %w", id, err)
			}
			role.Policies = append(role.Policies, Policy{Name: id, Document: doc})
		}
	}
	return roles, nil
}

// RoleAuthorizer decides requests of roles read with ParseRoles, such as
// the Scheduler's and EventBridge's roles starting the state machine.
type RoleAuthorizer struct {
	ev    *Evaluator
	set   string
	roles Roles
}

// NewRoleAuthorizer loads roles into the shared evaluator.
func NewRoleAuthorizer(roles Roles) (*RoleAuthorizer, error) {
	ev, err := SharedEvaluator()
	if err != nil {
		return nil, err
	}
	set := fmt.Sprintf("set-%d", setSeq.Add(1))
	if err := ev.Load(set, roles); err != nil {
		return nil, err
	}
	return &RoleAuthorizer{ev: ev, set: set, roles: roles}, nil
}

// Allowed tells whether role (a logical id) may do action on resource;
// when not, the error says who was denied what.
func (a *RoleAuthorizer) Allowed(role, action, resource string) error {
	r := a.roles[role]
	if r == nil {
		return fmt.Errorf("no role %s", role)
	}
	principal := r.ARN(ec2sim.AccountID)
	d, err := a.ev.Evaluate(a.set, role, principal, []ec2sim.AuthzRequest{{Action: action, Resource: resource, Context: map[string]any{}}})
	if err != nil {
		return err
	}
	if d[0] != Allowed {
		return fmt.Errorf("%s is not authorized to perform: %s on resource: %s (%s)", principal, action, resource, d[0])
	}
	return nil
}
