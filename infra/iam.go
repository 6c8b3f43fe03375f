package infra

import (
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// Tags the IAM conditions rely on (the contract in the design: the tool
// marks everything it makes, and only touches what it marked).
const (
	tagCreatedBy   = rotation.TagCreatedBy
	createdByValue = rotation.CreatedBy
	tagLatest      = rotation.TagLatest
	tagTrack       = rotation.TagTrack
	tagRolledBack  = rotation.TagRolledBack
)

// permissionContext holds what the statements are scoped with.
type permissionContext struct {
	partition string
	account   string
	// regions the functions may call: the stack's (home) region and every
	// copy destination.
	regions []string
	// selectors are the distinct instance selectors of the policies.
	selectors []map[string]string
	// ssmPrefixes are parameter ARN prefixes ("amirotate/nightly/") the
	// policies publish under.
	ssmPrefixes []string
	kmsKeys     []string
	// The verify blocks' subnets, security groups, instance profiles and
	// probe documents: where and how test instances may be launched.
	verifySubnets, verifyGroups, verifyProfiles, verifyDocuments []string
	// scriptDocuments and scriptSelectors: the SSM documents the policies'
	// pre and post scripts send, and the selectors of those policies.
	scriptDocuments []string
	scriptSelectors []map[string]string
}

func newPermissionContext(r *Rotation, p *RotationProps) *permissionContext {
	stack := stackOf(r.Construct)
	pc := &permissionContext{
		partition: *stack.Partition(),
		account:   *stack.Account(),
		regions:   append([]string{*stack.Region()}, copyRegions(p.Policies)...),
		kmsKeys:   append([]string(nil), p.CopyKMSKeyArns...),
	}
	seenSel := map[string]bool{}
	seenSSM := map[string]bool{}
	for _, ps := range p.Policies {
		sel := selectorTags(ps.Policy)
		key := selectorKey(sel)
		if !seenSel[key] {
			seenSel[key] = true
			pc.selectors = append(pc.selectors, sel)
		}
		if sc := ps.Policy.WithDefaults().Scripts; sc != nil {
			for _, d := range sc.Documents() {
				if !slices.Contains(pc.scriptDocuments, d) {
					pc.scriptDocuments = append(pc.scriptDocuments, d)
				}
			}
			if !slices.ContainsFunc(pc.scriptSelectors, func(s map[string]string) bool { return selectorKey(s) == key }) {
				pc.scriptSelectors = append(pc.scriptSelectors, sel)
			}
		}
		if prefix := ssmPrefix(ps.Policy.Publish.SSMParameter, ps.Policy.Name); prefix != "" && !seenSSM[prefix] {
			seenSSM[prefix] = true
			pc.ssmPrefixes = append(pc.ssmPrefixes, prefix)
		}
	}
	pc.verifySubnets, pc.verifyGroups, pc.verifyProfiles, pc.verifyDocuments = verifyTargets(p.Policies)
	sort.Strings(pc.ssmPrefixes)
	sort.Strings(pc.scriptDocuments)
	return pc
}

// verifyTargets lists, once each, the subnets, security groups, instance
// profiles and probe documents of the policies' verify blocks. Each list
// is de-duplicated on its own: a profile and a document may share a name.
func verifyTargets(policies []PolicySchedule) (subnets, groups, profiles, documents []string) {
	add := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, ps := range policies {
		v := ps.Policy.Verify
		if v == nil {
			continue
		}
		add(&subnets, v.SubnetID)
		for _, g := range v.SecurityGroupIDs {
			add(&groups, g)
		}
		add(&profiles, v.InstanceProfile)
		if v.Probe != nil {
			add(&documents, v.Probe.Document)
		}
	}
	return subnets, groups, profiles, documents
}

func selectorKey(sel map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(sel) {
		b.WriteString(k + "=" + sel[k] + "\x00")
	}
	return b.String()
}

// ssmPrefix is the part of a parameter name template that is the same for
// every instance: the policy name filled in, cut at the first remaining
// placeholder, without the leading slash (parameter ARNs drop it).
func ssmPrefix(template, policy string) string {
	if template == "" {
		return ""
	}
	s := strings.ReplaceAll(template, "{policy}", policy)
	if i := strings.Index(s, "{"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimPrefix(s, "/")
}

// impliedActions are authorized by AWS as part of a call the handler makes,
// without being a call of their own (ec2sim.Extra lists them with the AWS
// documents that say so):
//   - CreateImage and CopyImage with TagSpecifications are also authorized
//     as ec2:CreateTags (with ec2:CreateAction naming the call);
//   - PutParameter of an aws:ec2:image value: Parameter Store checks the
//     image with the caller's ec2:DescribeImages, after the call succeeded;
//     without it the parameter silently keeps its old value (publish also
//     reads images itself, so its Read statement grants it);
//   - DescribeImageReferences (retention asks for every resource type, since
//     a reference missed is an image deleted while in use) reads each type
//     with the caller's permissions: instances, launch templates, SSM
//     parameters, Image Builder image and container recipes.
var impliedActions = map[string][]string{
	"snapshot": {"ec2:CreateTags"},
	"copy":     {"ec2:CreateTags"},
	"publish":  {"ec2:DescribeImages"},
	// RunInstances with TagSpecifications and an instance profile is also
	// authorized as ec2:CreateTags and iam:PassRole.
	"verify": {"iam:PassRole"},
	"retention": {"ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "imagebuilder:GetContainerRecipe",
		"imagebuilder:ListContainerRecipes", "imagebuilder:ListImageRecipes", "ssm:DescribeParameters", "ssm:GetParameters"},
}

// statements returns the API statements of a function's role.
func (pc *permissionContext) statements(step string) []awsiam.PolicyStatement {
	var out []awsiam.PolicyStatement
	if reads := readActions(step); len(reads) > 0 {
		out = append(out, pc.statement("Read", reads, []string{"*"}, nil))
	}
	switch step {
	case "snapshot":
		for i, sel := range pc.selectors {
			out = append(out, pc.statement(sid("CreateImageOfSelectedInstances", i),
				[]string{"ec2:CreateImage"}, []string{pc.arn("ec2", "*", pc.account, "instance/*")}, selectorCondition(sel)))
		}
		out = append(out,
			pc.statement("CreateTaggedImage", []string{"ec2:CreateImage"}, pc.imagesAndSnapshots(), requestTagged()),
			pc.statement("TagOnCreateImage", []string{"ec2:CreateTags"}, pc.imagesAndSnapshots(), createAction("CreateImage")),
		)
	case ec2x.StepScripts:
		if len(pc.scriptDocuments) == 0 {
			break // no policy has scripts: the function only reads
		}
		out = append(out,
			// No resource-level permissions exist for these (Service Authorization Reference).
			pc.statement("FollowCommands", []string{"ssm:CancelCommand", "ssm:ListCommandInvocations", "ssm:ListCommands"}, []string{"*"}, nil),
			pc.statement("SendScriptDocuments", []string{"ssm:SendCommand"}, pc.documentARNs(), nil))
		for i, sel := range pc.scriptSelectors {
			// SendCommand is authorized on the document and on each
			// instance apart: the tag condition goes on the instances only.
			out = append(out, pc.statement(sid("SendScriptsToSelectedInstances", i), []string{"ssm:SendCommand"},
				[]string{pc.arn("ec2", "*", pc.account, "instance/*")}, selectorConditionOn("ssm:resourceTag/", sel)))
		}
	case "poll", "retention":
		out = append(out, pc.statement("DeleteManagedImages", []string{"ec2:DeregisterImage", "ec2:DeleteSnapshot"},
			pc.imagesAndSnapshots(), resourceTagged()))
		if step == "retention" {
			out = append(out,
				pc.statement("ReadImageReferences", []string{"ec2:DescribeInstances", "ec2:DescribeLaunchTemplates",
					"imagebuilder:ListContainerRecipes", "imagebuilder:ListImageRecipes", "ssm:DescribeParameters"}, []string{"*"}, nil),
				pc.statement("ReadParameterReferences", []string{"ssm:GetParameters"},
					[]string{pc.arn("ssm", "*", pc.account, "parameter/*")}, nil),
				pc.statement("ReadContainerRecipeReferences", []string{"imagebuilder:GetContainerRecipe"},
					[]string{pc.arn("imagebuilder", "*", pc.account, "container-recipe/*")}, nil),
				// Retiring expired images other accounts may use: stop
				// sharing them, deprecate them, and ask EC2 for usage reports
				// (on the image, and a report tagged as amirotate's).
				pc.statement("RetireSharedManagedImages",
					[]string{"ec2:CreateImageUsageReport", "ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"},
					pc.imagesAndSnapshots(), resourceTagged()),
				pc.statement("CreateTaggedUsageReports", []string{"ec2:CreateImageUsageReport"},
					[]string{pc.arn("ec2", "*", pc.account, "image-usage-report/*")}, requestTagged()),
			)
		}
	case "copy":
		out = append(out,
			pc.statement("CopyToTaggedImage", []string{"ec2:CopyImage"}, pc.imagesAndSnapshots(), requestTagged()),
			pc.statement("TagOnCopyImage", []string{"ec2:CreateTags"}, pc.imagesAndSnapshots(), createAction("CopyImage")),
		)
		if len(pc.kmsKeys) > 0 {
			out = append(out, pc.kmsStatements()...)
		}
	case "tag":
		latestOnly := resourceTagged()
		latestOnly["ForAllValues:StringEquals"] = map[string]interface{}{"aws:TagKeys": []string{tagLatest}}
		out = append(out,
			pc.statement("MarkLatestImages", []string{"ec2:CreateTags", "ec2:DeleteTags"},
				[]string{pc.arn("ec2", "*", "", "image/*")}, latestOnly),
			pc.statement("DeprecateAndShareManagedImages",
				[]string{"ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"},
				pc.imagesAndSnapshots(), resourceTagged()),
		)
	case ec2x.StepVerify:
		out = append(out, pc.verifyStatements()...)
	case ec2x.StepRoll:
		// Auto Scaling groups carry no amirotate mark: the step itself
		// refreshes only groups that launch a template publish just moved
		// (tracked, and of the instance's lineage), and only for policies
		// with a roll block; the role grants the two refresh calls on the
		// account's groups in the deployment's regions.
		out = append(out, pc.statement("RefreshGroups", []string{"autoscaling:StartInstanceRefresh", "autoscaling:CancelInstanceRefresh"},
			[]string{pc.arn("autoscaling", "*", pc.account, "autoScalingGroup:*:autoScalingGroupName/*")}, nil))
	case "publish":
		// amirotate rollback, with this role: amirotate:latest and the
		// rolled-back mark, on amirotate's images only.
		rollbackTags := resourceTagged()
		rollbackTags["ForAllValues:StringEquals"] = map[string]interface{}{"aws:TagKeys": []string{tagLatest, tagRolledBack}}
		out = append(out, pc.statement("RollBackManagedImages", []string{"ec2:CreateTags", "ec2:DeleteTags"},
			[]string{pc.arn("ec2", "*", "", "image/*")}, rollbackTags))
		out = append(out, pc.statement("UpdateTrackedLaunchTemplates",
			[]string{"ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"},
			[]string{pc.arn("ec2", "*", pc.account, "launch-template/*")},
			map[string]interface{}{"Null": map[string]interface{}{"aws:ResourceTag/" + tagTrack: "false"}}))
		if len(pc.ssmPrefixes) > 0 {
			params := make([]string, len(pc.ssmPrefixes))
			for i, prefix := range pc.ssmPrefixes {
				params[i] = pc.arn("ssm", "*", pc.account, "parameter/"+prefix+"*")
			}
			out = append(out, pc.statement("PublishParameters", []string{"ssm:GetParameters", "ssm:PutParameter"}, params, nil))
		}
	}
	return out
}

// verifyStatements let the verify step launch test instances only from
// amirotate's images, tagged as test instances, into the policies'
// subnets and security groups with their instance profiles; terminate only
// test instances; mark only amirotate's images as rejected; and run the
// policies' probe documents only on test instances. Without a verify block
// in any policy there is no subnet to launch into: RunInstances is denied.
func (pc *permissionContext) verifyStatements() []awsiam.PolicyStatement {
	testInstance := map[string]interface{}{
		"StringEquals": map[string]interface{}{"aws:RequestTag/" + tagCreatedBy: createdByValue},
		"Null":         map[string]interface{}{"aws:RequestTag/" + rotation.TagVerifies: "false"},
	}
	network := []string{pc.arn("ec2", "*", pc.account, "network-interface/*")}
	for _, id := range pc.verifySubnets {
		network = append(network, pc.arn("ec2", "*", pc.account, "subnet/"+id))
	}
	for _, id := range pc.verifyGroups {
		network = append(network, pc.arn("ec2", "*", pc.account, "security-group/"+id))
	}
	out := []awsiam.PolicyStatement{
		pc.statement("LaunchTestInstances", []string{"ec2:RunInstances"},
			[]string{pc.arn("ec2", "*", pc.account, "instance/*"), pc.arn("ec2", "*", pc.account, "volume/*")}, testInstance),
		pc.statement("LaunchFromAmirotateImages", []string{"ec2:RunInstances"}, []string{pc.arn("ec2", "*", "", "image/*")}, resourceTagged()),
		pc.statement("LaunchIntoVerifySubnets", []string{"ec2:RunInstances"}, network, nil),
		pc.statement("TagTestInstancesOnLaunch", []string{"ec2:CreateTags"},
			[]string{pc.arn("ec2", "*", pc.account, "instance/*"), pc.arn("ec2", "*", pc.account, "volume/*")}, createAction("RunInstances")),
		pc.statement("TerminateTestInstances", []string{"ec2:TerminateInstances"}, []string{pc.arn("ec2", "*", pc.account, "instance/*")},
			map[string]interface{}{
				"StringEquals": map[string]interface{}{"aws:ResourceTag/" + tagCreatedBy: createdByValue},
				"Null":         map[string]interface{}{"aws:ResourceTag/" + rotation.TagVerifies: "false"},
			}),
		pc.statement("MarkRejectedImages", []string{"ec2:CreateTags"}, []string{pc.arn("ec2", "*", "", "image/*")},
			func() map[string]interface{} {
				c := resourceTagged()
				c["ForAllValues:StringEquals"] = map[string]interface{}{"aws:TagKeys": []string{rotation.TagVerification}}
				return c
			}()),
		pc.statement("ReadProbeResults", []string{"ssm:GetCommandInvocation"}, []string{"*"}, nil),
	}
	if len(pc.verifyProfiles) > 0 {
		roles := make([]string, len(pc.verifyProfiles))
		for i, name := range pc.verifyProfiles {
			roles[i] = "arn:" + pc.partition + ":iam::" + pc.account + ":role/" + name
		}
		out = append(out, awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("PassTestInstanceRoles"),
			Actions:    jsii.Strings("iam:PassRole"),
			Resources:  jsii.Strings(roles...),
			Conditions: &map[string]interface{}{"StringEquals": map[string]interface{}{"iam:PassedToService": "ec2.amazonaws.com"}},
		}))
	}
	if len(pc.verifyDocuments) > 0 {
		var docs []string
		for _, d := range pc.verifyDocuments {
			docs = append(docs, pc.arn("ssm", "*", "", "document/"+d), pc.arn("ssm", "*", pc.account, "document/"+d))
		}
		out = append(out,
			pc.statement("RunProbeDocuments", []string{"ssm:SendCommand"}, docs, nil),
			pc.statement("ProbeTestInstances", []string{"ssm:SendCommand"}, []string{pc.arn("ec2", "*", pc.account, "instance/*")},
				map[string]interface{}{"Null": map[string]interface{}{"aws:ResourceTag/" + rotation.TagVerifies: "false"}}))
	}
	return out
}

// readActions are the step's calls that IAM only grants on "*"; the calls
// are those of the step's client interfaces (ec2x.Actions), so a new call
// gets its grant here or a statement below.
func readActions(step string) []string {
	var out []string
	for _, a := range ec2x.Actions(step) {
		if isReadOnly(a) {
			out = append(out, a)
		}
	}
	return out
}

func isReadOnly(action string) bool {
	_, name, _ := strings.Cut(action, ":")
	return strings.HasPrefix(name, "Describe")
}

// statement builds an Allow statement limited to the deployment's regions.
func (pc *permissionContext) statement(sid string, actions, resources []string, conditions map[string]interface{}) awsiam.PolicyStatement {
	if conditions == nil {
		conditions = map[string]interface{}{}
	}
	eq, _ := conditions["StringEquals"].(map[string]interface{})
	if eq == nil {
		eq = map[string]interface{}{}
	}
	eq["aws:RequestedRegion"] = pc.regions
	conditions["StringEquals"] = eq
	sorted := append([]string(nil), actions...)
	sort.Strings(sorted)
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String(sid),
		Actions:    jsii.Strings(sorted...),
		Resources:  jsii.Strings(resources...),
		Conditions: &conditions,
	})
}

// kmsStatements let EC2, on the copy function's behalf, use the configured
// keys to encrypt copies and read encrypted sources: only through EC2 in the
// deployment's regions, and grants only for AWS resources (the snapshots EC2
// makes). The actions are those EBS encryption documents for callers.
func (pc *permissionContext) kmsStatements() []awsiam.PolicyStatement {
	via := make([]string, len(pc.regions))
	for i, r := range pc.regions {
		via[i] = "ec2." + r + ".amazonaws.com"
	}
	return []awsiam.PolicyStatement{
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("UseCopyKeysThroughEC2"),
			Actions: jsii.Strings("kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
				"kms:ReEncryptFrom", "kms:ReEncryptTo"),
			Resources:  jsii.Strings(pc.kmsKeys...),
			Conditions: &map[string]interface{}{"StringEquals": map[string]interface{}{"kms:ViaService": via}},
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("GrantCopyKeysToEC2"),
			Actions:   jsii.Strings("kms:CreateGrant"),
			Resources: jsii.Strings(pc.kmsKeys...),
			Conditions: &map[string]interface{}{
				"StringEquals": map[string]interface{}{"kms:ViaService": via},
				"Bool":         map[string]interface{}{"kms:GrantIsForAWSResource": "true"},
			},
		}),
	}
}

func (pc *permissionContext) arn(service, region, account, resource string) string {
	return "arn:" + pc.partition + ":" + service + ":" + region + ":" + account + ":" + resource
}

// documentARNs are the script documents' ARNs in the home region: AWS's
// own documents (AWS-*, AWSEC2-*) carry no account.
func (pc *permissionContext) documentARNs() []string {
	out := make([]string, len(pc.scriptDocuments))
	for i, d := range pc.scriptDocuments {
		account := pc.account
		if strings.HasPrefix(d, "AWS") {
			account = ""
		}
		out[i] = pc.arn("ssm", pc.regions[0], account, "document/"+d)
	}
	return out
}

// imagesAndSnapshots are AMI and snapshot ARNs in any region: neither carries
// an account in its ARN.
func (pc *permissionContext) imagesAndSnapshots() []string {
	return []string{pc.arn("ec2", "*", "", "image/*"), pc.arn("ec2", "*", "", "snapshot/*")}
}

func sid(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + string(rune('A'+i-1))
}

// resourceTagged: the resource carries amirotate:created-by=amirotate.
func resourceTagged() map[string]interface{} {
	return map[string]interface{}{"StringEquals": map[string]interface{}{"aws:ResourceTag/" + tagCreatedBy: createdByValue}}
}

// requestTagged: the call tags what it creates with amirotate:created-by=amirotate.
func requestTagged() map[string]interface{} {
	return map[string]interface{}{"StringEquals": map[string]interface{}{"aws:RequestTag/" + tagCreatedBy: createdByValue}}
}

// createAction: tagging only as part of creating the resource.
func createAction(action string) map[string]interface{} {
	return map[string]interface{}{"StringEquals": map[string]interface{}{"ec2:CreateAction": action}}
}

// selectorCondition: the instance carries the selector's tags ("*" = any
// value, i.e. the tag exists).
func selectorCondition(sel map[string]string) map[string]interface{} {
	return selectorConditionOn("aws:ResourceTag/", sel)
}

// selectorConditionOn is selectorCondition with the tag key prefix a
// service reads (SSM's SendCommand documents ssm:resourceTag/ on instances:
// https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cmdsec.html).
func selectorConditionOn(prefix string, sel map[string]string) map[string]interface{} {
	eq := map[string]interface{}{}
	null := map[string]interface{}{}
	for _, k := range sortedKeys(sel) {
		if sel[k] == "*" {
			null[prefix+k] = "false"
		} else {
			eq[prefix+k] = sel[k]
		}
	}
	out := map[string]interface{}{"StringEquals": eq}
	if len(null) > 0 {
		out["Null"] = null
	}
	return out
}

// stateMachineStatements: invoke exactly the step functions, and put the
// rotation's summary event on the default bus.
func stateMachineStatements(r *Rotation) []awsiam.PolicyStatement {
	arns := make([]string, 0, len(r.Functions))
	for _, spec := range functionSpecs {
		arns = append(arns, *r.Functions[spec.Name].FunctionArn())
	}
	stack := stackOf(r.Construct)
	return []awsiam.PolicyStatement{
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("InvokeStepFunctions"),
			Actions:   jsii.Strings("lambda:InvokeFunction"),
			Resources: jsii.Strings(arns...),
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:     jsii.String("PutRotationEvents"),
			Actions: jsii.Strings("events:PutEvents"),
			Resources: jsii.Strings(*awscdk.Arn_Format(&awscdk.ArnComponents{
				Service:      jsii.String("events"),
				Resource:     jsii.String("event-bus"),
				ResourceName: jsii.String(eventBusName),
			}, stack)),
		}),
	}
}
