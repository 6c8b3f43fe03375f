// Package statemachine holds the rotation's Step Functions definition
// (rotation.asl.json, Amazon States Language with ${...} definition
// substitutions) and renders, checks and draws it. AWS gets the same file
// through the CDK's DefinitionSubstitutions; the local runner gets it
// rendered with LocalARNs.
package statemachine

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// Template is the definition as written, with ${...} placeholders.
//
//go:embed rotation.asl.json
var Template []byte

// FunctionNamePrefix is prepended to a step name to form its local function
// name (amirotate-snapshot); the deployed names are the CDK's to choose.
const FunctionNamePrefix = "amirotate-"

// EventBusKey is the placeholder of the EventBridge bus the summary event goes to.
const EventBusKey = "EventBusName"

// Substitutions maps placeholder names (DiscoverFunctionArn, EventBusName)
// to their values.
type Substitutions map[string]string

// FunctionKey is the placeholder of a step's function ARN: snapshot →
// SnapshotFunctionArn.
func FunctionKey(step string) string {
	if step == "" {
		return ""
	}
	return strings.ToUpper(step[:1]) + step[1:] + "FunctionArn"
}

// LocalARNs are the substitutions for a local run: the ARN of each step's
// function (ec2x.Steps) in the given region and account, named
// FunctionNamePrefix+step, and the default event bus.
func LocalARNs(region, account string) Substitutions {
	s := Substitutions{EventBusKey: "default"}
	for _, f := range ec2x.Steps {
		s[FunctionKey(f)] = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s%s", region, account, FunctionNamePrefix, f)
	}
	return s
}

var placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)

// Placeholders lists the distinct placeholder names of a template, sorted.
func Placeholders(tmpl []byte) []string {
	seen := map[string]bool{}
	for _, m := range placeholder.FindAllSubmatch(tmpl, -1) {
		seen[string(m[1])] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// Render substitutes every placeholder of the embedded definition.
func Render(subs Substitutions) ([]byte, error) {
	return RenderTemplate(Template, subs)
}

// RenderTemplate substitutes every placeholder of tmpl. A placeholder
// without a value, a value for no placeholder and an empty value are all
// errors: each would deploy a state machine that fails only when it runs.
// Values are JSON-escaped, and the result must still parse.
func RenderTemplate(tmpl []byte, subs Substitutions) ([]byte, error) {
	names := Placeholders(tmpl)
	var problems []string
	for _, n := range names {
		v, ok := subs[n]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("no value for ${%s}", n))
		case v == "":
			problems = append(problems, fmt.Sprintf("empty value for ${%s}", n))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(subs)) {
		if !slices.Contains(names, k) {
			problems = append(problems, fmt.Sprintf("%q is not a placeholder of the definition (it has %s)", k, strings.Join(names, ", ")))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("rendering the state machine: %s", strings.Join(problems, "; "))
	}
	out := placeholder.ReplaceAllFunc(tmpl, func(m []byte) []byte {
		v := subs[string(placeholder.FindSubmatch(m)[1])]
		quoted, _ := json.Marshal(v) // a string always marshals
		return quoted[1 : len(quoted)-1]
	})
	if !json.Valid(out) {
		return nil, fmt.Errorf("rendering the state machine: the result is not valid JSON")
	}
	return out, nil
}
