package infra

import (
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Reasons for the AwsSolutions findings that remain by design. Each
// suppression names the exact wildcard it accepts (appliesTo), so a new
// wildcard is still reported.
const (
	reasonDescribe = "Read-only Describe and List actions (ec2:Describe*, autoscaling:Describe*, ssm:DescribeParameters, " +
		"imagebuilder:List*Recipes) do not support resource-level permissions, so IAM requires Resource \"*\"; each statement is " +
		"limited to the deployment's regions (aws:RequestedRegion)."
	reasonImages = "AMI and snapshot ids are made at run time, so they cannot be listed. Every statement on them is conditioned on " +
		"amirotate's tag amirotate:created-by=amirotate (aws:ResourceTag for changes and deletions, aws:RequestTag for creation, " +
		"ec2:CreateAction for tagging at creation, aws:TagKeys for the latest marker): only what amirotate made can be touched."
	reasonInstances = "Instances are chosen at run time by their tags: CreateImage is allowed only on instances that carry a policy's " +
		"selector tags (aws:ResourceTag), the same rule the discover step applies."
	reasonLaunchTemplates = "Launch templates opt in with the amirotate:track tag: creating versions and setting the default is " +
		"allowed only on templates that carry it (aws:ResourceTag)."
	reasonUsageReports = "An image usage report's id is made by CreateImageUsageReport: retention may create reports only tagged " +
		"amirotate:created-by=amirotate (aws:RequestTag), and only on images that carry that tag."
	reasonParameters = "Parameter names contain the instance id; access is limited to each policy's parameter path (its ssmParameter " +
		"template up to the first per-instance placeholder)."
	reasonReferences = "DescribeImageReferences checks every resource type that can use an image with the caller's permissions: " +
		"it must read the account's SSM parameters and Image Builder container recipes to find the images they name (retention " +
		"must not delete an image in use). Read-only; SecureString values stay encrypted (no kms:Decrypt)."
	reasonGroups = "Auto Scaling groups carry no amirotate mark; the roll step starts or cancels an instance refresh only on a group " +
		"that launches a launch template publish just moved (tracked with amirotate:track, of the instance's lineage), and only " +
		"for policies with a roll block. Limited to the account's groups in the deployment's regions."
	reasonTestInstances = "Test instances and their volumes and network interfaces get their ids at launch: RunInstances is allowed " +
		"only with amirotate's tags on the instance and volumes (aws:RequestTag), only from amirotate's images, only into the verify " +
		"blocks' subnets and security groups (listed by id, in the deployment's regions); TerminateInstances and SendCommand only on " +
		"instances tagged as test instances (aws:ResourceTag); the probe documents are listed by name."
	reasonXRay = "xray:PutTraceSegments and xray:PutTelemetryRecords (added by CDK for active tracing) do not support " +
		"resource-level permissions."
	reasonStateMachine = "Added by CDK for the state machine's logging and tracing: CloudWatch Logs log-delivery actions " +
		"(logs:CreateLogDelivery, logs:PutResourcePolicy, ...) and X-Ray actions do not support resource-level permissions."
)

// cdk-nag shows unresolved pseudo parameters as <AWS::Partition> and
// <AWS::AccountId>; with an explicit environment they are literal.
const (
	partitionRE = `(<AWS::Partition>|aws[a-z-]*)`
	accountRE   = `(<AWS::AccountId>|[0-9]{12})`
)

// addSuppressions records, next to the resources, why the AwsSolutions
// findings that remain are intended.
func addSuppressions(r *Rotation) {
	for _, spec := range functionSpecs {
		id := titleCase(spec.Name)
		if api := r.Node().TryFindChild(jsii.String(id + "Api")); api != nil {
			suppress(api, false,
				iam5(reasonDescribe, `^Resource::\*$`),
				iam5(reasonImages, `^Resource::arn:`+partitionRE+`:ec2:\*::(image|snapshot)/\*$`),
				iam5(reasonInstances, `^Resource::arn:`+partitionRE+`:ec2:\*:`+accountRE+`:instance/\*$`),
				iam5(reasonLaunchTemplates, `^Resource::arn:`+partitionRE+`:ec2:\*:`+accountRE+`:launch-template/\*$`),
				iam5(reasonUsageReports, `^Resource::arn:`+partitionRE+`:ec2:\*:`+accountRE+`:image-usage-report/\*$`),
				iam5(reasonParameters, `^Resource::arn:`+partitionRE+`:ssm:\*:`+accountRE+`:parameter/[^*]+\*$`),
				iam5(reasonTestInstances, `^Resource::arn:`+partitionRE+`:ec2:\*:`+accountRE+`:(instance|volume|network-interface)/\*$`),
				iam5(reasonTestInstances, `^Resource::arn:`+partitionRE+`:ec2:\*:`+accountRE+`:(subnet|security-group)/[^*]+$`),
				iam5(reasonTestInstances, `^Resource::arn:`+partitionRE+`:ssm:\*:(`+accountRE+`)?:document/[^*]+$`),
				iam5(reasonGroups, `^Resource::arn:`+partitionRE+`:autoscaling:\*:`+accountRE+`:autoScalingGroup:\*:autoScalingGroupName/\*$`),
				iam5(reasonReferences, `^Resource::arn:`+partitionRE+`:(ssm:\*:`+accountRE+`:parameter|imagebuilder:\*:`+accountRE+`:container-recipe)/\*$`),
			)
		}
		if role := r.Node().TryFindChild(jsii.String(id + "Role")); role != nil {
			suppress(role, true, iam5(reasonXRay, `^Resource::\*$`))
		}
	}
	suppress(r.StateMachine.Role(), true, iam5(reasonStateMachine, `^Resource::\*$`))
}

func iam5(reason, appliesTo string) *cdknag.NagPackSuppression {
	return &cdknag.NagPackSuppression{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String(reason),
		AppliesTo: &[]interface{}{&cdknag.RegexAppliesTo{Regex: jsii.String("/" + appliesTo + "/")}},
	}
}

func suppress(c constructs.IConstruct, children bool, s ...*cdknag.NagPackSuppression) {
	cdknag.NagSuppressions_AddResourceSuppressions(c, &s, jsii.Bool(children))
}
