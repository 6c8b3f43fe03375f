package infra

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/cxapi"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// Actions in a function's role that are not calls of its handler: the
// platform's (log writes, X-Ray traces) and KMS, which EC2 calls on the
// copy function's behalf.
func platformAction(a string) bool {
	return strings.HasPrefix(a, "logs:") || strings.HasPrefix(a, "xray:") || strings.HasPrefix(a, "kms:")
}

// TestIAM_RolesGrantExactlyTheCalledActions compares the synthesized policy
// of every function's role with ec2x.Actions(step) (plus the actions AWS
// authorizes as part of a call, impliedActions): nothing more, nothing less.
func TestIAM_RolesGrantExactlyTheCalledActions(t *testing.T) {
	synth(t)
	for _, tmpl := range []struct {
		name string
		json map[string]any
	}{{"Full", synthed.fullJSON}, {"Agnostic", synthed.agnoJSON}} {
		byStep := functionsByStep(t, tmpl.json)
		for _, spec := range functionSpecs {
			t.Run(tmpl.name+"/"+spec.Name, func(t *testing.T) {
				want := map[string]bool{}
				for _, a := range ec2x.Actions(spec.Name) {
					want[a] = true
				}
				for _, a := range impliedActions[spec.Name] {
					want[a] = true
				}
				granted := map[string]bool{}
				for _, st := range roleStatements(tmpl.json, functionRole(tmpl.json, byStep[spec.Name])) {
					for _, a := range st.Actions {
						// A KMS action the handler calls itself (the snapshot
						// step's DescribeKey) counts; those EC2 uses on the
						// copy step's behalf are the platform's.
						if !platformAction(a) || want[a] {
							granted[a] = true
						}
					}
				}
				if got, w := sortedSet(granted), sortedSet(want); !slices.Equal(got, w) {
					t.Errorf("role grants %v\nhandler calls %v", got, w)
				}
			})
		}
	}
}

// TestIAM_NoWildcardActions: every action in every policy is named.
func TestIAM_NoWildcardActions(t *testing.T) {
	synth(t)
	for name, tmpl := range map[string]map[string]any{"Full": synthed.fullJSON, "Agnostic": synthed.agnoJSON} {
		var docs []any
		for _, r := range resources(tmpl, "AWS::IAM::Policy") {
			docs = append(docs, props(r)["PolicyDocument"])
		}
		for _, r := range resources(tmpl, "AWS::IAM::Role") {
			for _, p := range asList(props(r)["Policies"]) {
				docs = append(docs, p.(map[string]any)["PolicyDocument"])
			}
		}
		for _, r := range resources(tmpl, "AWS::KMS::Key") {
			docs = append(docs, props(r)["KeyPolicy"])
		}
		for _, r := range resources(tmpl, "AWS::SNS::TopicPolicy") {
			docs = append(docs, props(r)["PolicyDocument"])
		}
		if len(docs) < 10 {
			t.Fatalf("%s: only %d policy documents found", name, len(docs))
		}
		for _, d := range docs {
			for _, st := range decodeStatements(d) {
				for _, a := range st.Actions {
					// The KMS key policy's root-account statement ("kms:*"
					// for the account) is CDK's default that keeps the key
					// manageable; it grants nothing to amirotate's roles.
					if strings.Contains(a, "*") && !(a == "kms:*" && isAccountRootStatement(d)) {
						t.Errorf("%s: statement %q has wildcard action %q", name, st.Sid, a)
					}
				}
			}
		}
	}
}

func isAccountRootStatement(doc any) bool {
	for _, s := range asList(doc.(map[string]any)["Statement"]) {
		m := s.(map[string]any)
		if m["Action"] == "kms:*" {
			p, _ := m["Principal"].(map[string]any)
			return p != nil && strings.Contains(mustJSON(p["AWS"]), ":root")
		}
	}
	return false
}

// TestIAM_DestructiveActionsAreScoped: every destructive or sharing action
// is limited by resource type and by amirotate's tags or parameter paths.
func TestIAM_DestructiveActionsAreScoped(t *testing.T) {
	synth(t)
	type rule struct {
		resources []string // allowed resource renderings
		condition string   // JSON fragment the Condition must contain
	}
	// The partition stays a pseudo parameter even with an explicit account
	// and region (the stack may still be deployed to aws-cn or aws-us-gov).
	images := []string{"arn:<AWS::Partition>:ec2:*::image/*", "arn:<AWS::Partition>:ec2:*::snapshot/*"}
	createdBy := `"aws:ResourceTag/amirotate:created-by":"amirotate"`
	rules := map[string]rule{
		"ec2:DeregisterImage":             {images, createdBy},
		"ec2:DeleteSnapshot":              {images, createdBy},
		"ec2:ModifyImageAttribute":        {images, createdBy},
		"ec2:ModifySnapshotAttribute":     {images, createdBy},
		"ec2:EnableImageDeprecation":      {images, createdBy},
		"ec2:DeleteTags":                  {images, createdBy},
		"ec2:CreateLaunchTemplateVersion": {[]string{"arn:<AWS::Partition>:ec2:*:" + testAccount + ":launch-template/*"}, `"Null":{"aws:ResourceTag/amirotate:track":"false"}`},
		"ec2:ModifyLaunchTemplate":        {[]string{"arn:<AWS::Partition>:ec2:*:" + testAccount + ":launch-template/*"}, `"Null":{"aws:ResourceTag/amirotate:track":"false"}`},
		"ssm:PutParameter": {[]string{
			"arn:<AWS::Partition>:ssm:*:" + testAccount + ":parameter/amirotate/nightly/*",
			"arn:<AWS::Partition>:ssm:*:" + testAccount + ":parameter/images/*",
		}, ""},
		"ec2:CopyImage": {images, `"aws:RequestTag/amirotate:created-by":"amirotate"`},
		"ec2:CreateImageUsageReport": {append(slices.Clone(images), "arn:<AWS::Partition>:ec2:*:"+testAccount+":image-usage-report/*"),
			`/amirotate:created-by":"amirotate"`},
	}
	found := map[string]bool{}
	for _, pol := range resources(synthed.fullJSON, "AWS::IAM::Policy") {
		for _, st := range decodeStatements(props(pol)["PolicyDocument"]) {
			for _, a := range st.Actions {
				r, ok := rules[a]
				if !ok {
					continue
				}
				found[a] = true
				for _, res := range st.Resources {
					if s := resourceString(res); !slices.Contains(r.resources, s) {
						t.Errorf("%s (%s): resource %s, want one of %v", a, st.Sid, s, r.resources)
					}
				}
				cond := mustJSON(st.Condition)
				if !strings.Contains(cond, r.condition) {
					t.Errorf("%s (%s): condition %s lacks %s", a, st.Sid, cond, r.condition)
				}
				if !strings.Contains(cond, `"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"]`) {
					t.Errorf("%s (%s): condition %s not limited to the deployment's regions", a, st.Sid, cond)
				}
			}
		}
	}
	for a := range rules {
		if !found[a] {
			t.Errorf("%s granted nowhere", a)
		}
	}
}

func TestIAM_CreateImageScopedBySelectorAndTags(t *testing.T) {
	synth(t)
	want := map[string]string{
		// One statement per distinct selector: the instance must carry its tags.
		"CreateImageOfSelectedInstances":  `{"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"],"aws:ResourceTag/amirotate:policy":"nightly"}}`,
		"CreateImageOfSelectedInstancesA": `{"Null":{"aws:ResourceTag/Env":"false"},"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"],"aws:ResourceTag/Role":"web"}}`,
		"CreateTaggedImage":               `{"StringEquals":{"aws:RequestTag/amirotate:created-by":"amirotate","aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"]}}`,
		"TagOnCreateImage":                `{"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"],"ec2:CreateAction":"CreateImage"}}`,
		"TagOnCopyImage":                  `{"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"],"ec2:CreateAction":"CopyImage"}}`,
		"MarkLatestImages":                `{"ForAllValues:StringEquals":{"aws:TagKeys":["amirotate:latest"]},"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1","us-west-2"],"aws:ResourceTag/amirotate:created-by":"amirotate"}}`,
	}
	got := map[string]string{}
	for _, pol := range resources(synthed.fullJSON, "AWS::IAM::Policy") {
		for _, st := range decodeStatements(props(pol)["PolicyDocument"]) {
			if _, ok := want[st.Sid]; ok {
				got[st.Sid] = mustJSON(st.Condition)
			}
		}
	}
	for sid, w := range want {
		if got[sid] != w {
			t.Errorf("%s: condition %s\nwant %s", sid, got[sid], w)
		}
	}
}

func TestIAM_KMSOnlyForCopyAndConfiguredKeys(t *testing.T) {
	synth(t)
	byStep := functionsByStep(t, synthed.fullJSON)
	keys := []string{
		"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"arn:aws:kms:us-west-2:111122223333:key/abcd1234-12ab-34cd-56ef-1234567890ab",
	}
	for _, spec := range functionSpecs {
		var kms []statement
		for _, st := range roleStatements(synthed.fullJSON, functionRole(synthed.fullJSON, byStep[spec.Name])) {
			if strings.HasPrefix(st.Actions[0], "kms:") {
				kms = append(kms, st)
			}
		}
		if spec.Name != "copy" {
			if len(kms) > 0 {
				t.Errorf("%s has KMS statements %+v", spec.Name, kms)
			}
			continue
		}
		if len(kms) != 2 {
			t.Fatalf("copy: %d KMS statements, want 2", len(kms))
		}
		for _, st := range kms {
			var res []string
			for _, r := range st.Resources {
				res = append(res, resourceString(r))
			}
			if !slices.Equal(res, keys) {
				t.Errorf("%s: resources %v, want %v", st.Sid, res, keys)
			}
			if c := mustJSON(st.Condition); !strings.Contains(c, `"kms:ViaService":["ec2.us-east-1.amazonaws.com","ec2.eu-west-1.amazonaws.com","ec2.us-west-2.amazonaws.com"]`) {
				t.Errorf("%s: condition %s, want kms:ViaService ec2", st.Sid, c)
			}
			if slices.Contains(st.Actions, "kms:CreateGrant") && !strings.Contains(mustJSON(st.Condition), `"kms:GrantIsForAWSResource":"true"`) {
				t.Errorf("%s: CreateGrant without kms:GrantIsForAWSResource", st.Sid)
			}
		}
	}
}

func TestIAM_StateMachineRole(t *testing.T) {
	synth(t)
	var roleID string
	for _, sm := range resources(synthed.fullJSON, "AWS::StepFunctions::StateMachine") {
		roleID = props(sm)["RoleArn"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
	}
	byStep := functionsByStep(t, synthed.fullJSON)
	var wantFns []string
	for _, spec := range functionSpecs {
		wantFns = append(wantFns, "<"+byStep[spec.Name]+".Arn>")
	}
	sort.Strings(wantFns)
	var invoke, put []string
	for _, st := range roleStatements(synthed.fullJSON, roleID) {
		for _, a := range st.Actions {
			switch {
			case a == "lambda:InvokeFunction":
				for _, r := range st.Resources {
					invoke = append(invoke, resourceString(r))
				}
			case a == "events:PutEvents":
				for _, r := range st.Resources {
					put = append(put, resourceString(r))
				}
			case strings.HasPrefix(a, "lambda:") || strings.HasPrefix(a, "events:") || strings.HasPrefix(a, "states:"):
				t.Errorf("unexpected action %s", a)
			}
		}
	}
	sort.Strings(invoke)
	if !slices.Equal(invoke, wantFns) {
		t.Errorf("invoke %v, want exactly %v", invoke, wantFns)
	}
	if want := []string{"arn:<AWS::Partition>:events:us-east-1:" + testAccount + ":event-bus/default"}; !slices.Equal(put, want) {
		t.Errorf("PutEvents on %v, want %v", put, want)
	}
	// Triggers may only start executions of this state machine.
	synthed.fullTmpl.HasResourceProperties(jsii.String("AWS::IAM::Policy"), &map[string]any{
		"PolicyDocument": map[string]any{"Statement": []any{map[string]any{
			"Action": "states:StartExecution", "Effect": "Allow",
			"Resource": map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RotationStateMachine"))},
		}}},
	})
}

// TestNag_AwsSolutions: the AwsSolutions pack finds nothing that is not
// suppressed with a reason.
func TestNag_AwsSolutions(t *testing.T) {
	synth(t)
	for name, notes := range map[string]assertions.Annotations{"Full": synthed.fullNotes, "Agnostic": synthed.agnoNotes} {
		match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		for level, found := range map[string]*[]*cxapi.SynthesisMessage{
			"error":   notes.FindError(jsii.String("*"), match),
			"warning": notes.FindWarning(jsii.String("*"), match),
		} {
			if found == nil {
				continue
			}
			for _, f := range *found {
				t.Errorf("%s: unsuppressed cdk-nag %s at %s: %v", name, level, *f.Id, mustJSON(f.Entry.Data))
			}
		}
	}
}
