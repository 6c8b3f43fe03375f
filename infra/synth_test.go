package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Synthesizing starts a node process (jsii) and takes seconds, so every test
// shares one app with two stacks: "Full" (the testdata deployment file in a
// known account and region) and "Agnostic" (one policy, an existing alarm
// topic, no environment: account and region stay tokens).
const (
	testAccount = "111122223333"
	testRegion  = "us-east-1"
)

var (
	synthOnce sync.Once
	synthErr  error
	synthed   struct {
		full, agnostic       *Stack
		fullTmpl, agnoTmpl   assertions.Template
		fullJSON, agnoJSON   map[string]any
		fullNotes, agnoNotes assertions.Annotations
		localJSON            map[string]any
	}
	assetDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amirotate-assets-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	assetDir = dir
	// Empty bootstraps: synth only hashes and stages them, so the tests do
	// not depend on `make build`.
	for _, spec := range functionSpecs {
		if err := os.MkdirAll(filepath.Join(dir, spec.Name), 0o755); err == nil {
			err = os.WriteFile(filepath.Join(dir, spec.Name, "bootstrap"), nil, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testProps(t testing.TB) *RotationProps {
	t.Helper()
	cfg, err := LoadConfig("testdata/deploy.json")
	if err != nil {
		t.Fatal(err)
	}
	props, err := cfg.Props(assetDir)
	if err != nil {
		t.Fatal(err)
	}
	return props
}

// synth returns the shared synthesized stacks.
func synth(t *testing.T) {
	t.Helper()
	synthOnce.Do(func() {
		outdir, err := os.MkdirTemp("", "amirotate-cdkout-")
		if err != nil {
			synthErr = err
			return
		}
		app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir)})
		local, err := localStack(app)
		if err != nil {
			synthErr = err
			return
		}
		full, err := NewStack(app, "Full", &StackProps{
			StackProps: awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String(testRegion)}},
			Rotation:   *testProps(t),
		})
		if err != nil {
			synthErr = err
			return
		}
		// The construct on its own, as another app would use it.
		agnosticProps := *testProps(t)
		agnosticProps.Policies = agnosticProps.Policies[1:]
		agnosticProps.AlarmEmail = ""
		agnosticProps.CopyKMSKeyArns = nil
		agnosticStack := awscdk.NewStack(app, jsii.String("Agnostic"), nil)
		agnosticProps.AlarmTopic = awssns.Topic_FromTopicArn(agnosticStack, jsii.String("Ops"),
			jsii.String("arn:aws:sns:us-east-1:111122223333:ops"))
		rot, err := NewRotation(agnosticStack, "Rotation", &agnosticProps)
		if err != nil {
			synthErr = err
			return
		}
		agnostic := &Stack{Stack: agnosticStack, Rotation: rot}
		awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)

		s := &synthed
		s.full, s.agnostic = full, agnostic
		s.localJSON = toMap(assertions.Template_FromStack(local.Stack, nil))
		s.fullTmpl = assertions.Template_FromStack(full.Stack, nil)
		s.agnoTmpl = assertions.Template_FromStack(agnostic.Stack, nil)
		s.fullJSON = toMap(s.fullTmpl)
		s.agnoJSON = toMap(s.agnoTmpl)
		s.fullNotes = assertions.Annotations_FromStack(full.Stack)
		s.agnoNotes = assertions.Annotations_FromStack(agnostic.Stack)
		os.RemoveAll(outdir)
	})
	if synthErr != nil {
		t.Fatalf("synth: %v", synthErr)
	}
}

func toMap(tmpl assertions.Template) map[string]any {
	b, err := json.Marshal(tmpl.ToJSON())
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// resources returns the template's resources of a type, by logical id.
func resources(tmpl map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tmpl["Resources"].(map[string]any) {
		res := r.(map[string]any)
		if res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func props(res map[string]any) map[string]any {
	p, _ := res["Properties"].(map[string]any)
	return p
}

// functionsByStep maps step name → the logical id of its Lambda function,
// found by the description newFunction writes.
func functionsByStep(t *testing.T, tmpl map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, res := range resources(tmpl, "AWS::Lambda::Function") {
		for _, spec := range functionSpecs {
			if props(res)["Description"] == "amirotate: "+spec.Description {
				out[spec.Name] = id
			}
		}
	}
	if len(out) != len(functionSpecs) {
		t.Fatalf("found functions %v, want one per step", out)
	}
	return out
}

// statement is one IAM policy statement, decoded loosely.
type statement struct {
	Sid       string
	Actions   []string
	Resources []any
	Condition map[string]any
}

func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	default:
		return []any{x}
	}
}

func decodeStatements(doc any) []statement {
	var out []statement
	for _, s := range asList(doc.(map[string]any)["Statement"]) {
		m := s.(map[string]any)
		st := statement{Resources: asList(m["Resource"])}
		st.Sid, _ = m["Sid"].(string)
		for _, a := range asList(m["Action"]) {
			st.Actions = append(st.Actions, a.(string))
		}
		st.Condition, _ = m["Condition"].(map[string]any)
		out = append(out, st)
	}
	return out
}

// roleStatements returns every statement that applies to a role: its inline
// policies and the AWS::IAM::Policy resources attached to it.
func roleStatements(tmpl map[string]any, roleID string) []statement {
	var out []statement
	role := resources(tmpl, "AWS::IAM::Role")[roleID]
	for _, p := range asList(props(role)["Policies"]) {
		out = append(out, decodeStatements(p.(map[string]any)["PolicyDocument"])...)
	}
	for _, pol := range resources(tmpl, "AWS::IAM::Policy") {
		for _, r := range asList(props(pol)["Roles"]) {
			if ref, ok := r.(map[string]any); ok && ref["Ref"] == roleID {
				out = append(out, decodeStatements(props(pol)["PolicyDocument"])...)
			}
		}
	}
	return out
}

// functionRole returns the logical id of a function's role.
func functionRole(tmpl map[string]any, fnID string) string {
	fn := resources(tmpl, "AWS::Lambda::Function")[fnID]
	return props(fn)["Role"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// resourceString renders a statement resource (a string or an Fn::Join of
// pseudo parameters) for comparisons.
func resourceString(r any) string {
	switch x := r.(type) {
	case string:
		return x
	case map[string]any:
		if join, ok := x["Fn::Join"].([]any); ok {
			var b strings.Builder
			for _, part := range join[1].([]any) {
				if s, ok := part.(string); ok {
					b.WriteString(s)
				} else if ref, ok := part.(map[string]any)["Ref"].(string); ok {
					b.WriteString("<" + ref + ">")
				} else {
					b.WriteString("<?>")
				}
			}
			return b.String()
		}
		if ga, ok := x["Fn::GetAtt"].([]any); ok {
			return "<" + ga[0].(string) + "." + ga[1].(string) + ">"
		}
	}
	b, _ := json.Marshal(r)
	return string(b)
}
