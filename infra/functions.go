package infra

import (
	"path/filepath"
	"time"

	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// functionSpec sizes one Lambda. The handlers are I/O bound (EC2 API calls
// and their SDK retries), so memory buys little CPU that matters; timeouts
// follow the worst case of the calls each step makes for one batch (up to
// 100 instances) under throttling, where one call may spend up to a minute
// in the SDK retryer (ec2x.MaxAttempts, ec2x.MaxBackoff).
type functionSpec struct {
	Name        string
	Description string
	MemoryMB    float64
	Timeout     time.Duration
}

// functionSpecs sizes each step's function, in the order of ec2x.Steps
// (TestRotation_FunctionsMatchStateMachine holds them to it).
var functionSpecs = []functionSpec{
	// One paginated DescribeInstances over the fleet (1,000 per page; 10
	// pages for 10,000 instances, each of which may wait out throttling);
	// holds all targets in memory to cut them into batches.
	{ec2x.StepDiscover, "Validates the execution input and finds the policy's instances in batches", 256, 5 * time.Minute},
	// Run Command calls per batch: a sweep listing, SendCommand per 50
	// instances, one ListCommandInvocations per command and poll.
	{ec2x.StepScripts, "Runs the policy's pre and post scripts (SSM Run Command) around CreateImage", 256, 3 * time.Minute},
	// CreateImage per instance of a batch, 5/s bucket: 100 calls take ~20 s,
	// storms of throttling stretch it.
	{ec2x.StepSnapshot, "Starts CreateImage for each instance of a batch", 256, 5 * time.Minute},
	// One DescribeImages per region, plus clean-up of failed images.
	{ec2x.StepPoll, "Checks pending images, cleans up failed ones, decides the next wait", 256, 3 * time.Minute},
	// CopyImage refills at 1/s per destination: 100 copies × regions.
	{ec2x.StepCopy, "Starts cross-region copies of available images", 256, 10 * time.Minute},
	// A RunInstances per new image, then one DescribeInstanceStatus per
	// round and a TerminateInstances; the state machine does the waiting.
	{ec2x.StepVerify, "Boots a test instance from each new image, checks it and terminates it", 256, 5 * time.Minute},
	// Per-image deprecation and sharing calls (mutating bucket, 5/s).
	{ec2x.StepTag, "Marks the latest images, deprecates and shares them", 256, 5 * time.Minute},
	// SSM and launch template writes per instance and region.
	{ec2x.StepPublish, "Publishes new image ids to SSM parameters and launch templates", 256, 5 * time.Minute},
	// One DescribeAutoScalingGroups listing, then a Start or Describe of an
	// instance refresh per group; the state machine does the waiting.
	{ec2x.StepRoll, "Starts and follows instance refreshes of the Auto Scaling groups on the moved launch templates", 256, 5 * time.Minute},
	// Lists every managed image of the policy per region, their references,
	// then deregisters and deletes snapshots one by one; the "others" pass
	// covers a whole policy, so it gets the most memory and the longest time
	// (a minute under the state machine's 900 s task timeout, so Lambda's own
	// timeout reports first).
	{ec2x.StepRetention, "Deregisters images past the policy's retention and deletes their snapshots", 512, 14 * time.Minute},
	// Pure computation on the state, no AWS calls.
	{ec2x.StepReport, "Summarizes a batch or a whole rotation", 128, 30 * time.Second},
}

// newFunction creates a step's function with its own role (only the actions
// its handler calls), its own log group (retention, JSON logs) and tracing.
func newFunction(r *Rotation, spec functionSpec, p *RotationProps, perms *permissionContext) awslambda.Function {
	id := titleCase(spec.Name)
	logGroup := awslogs.NewLogGroup(r.Construct, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention: p.LogRetention,
	})

	// A role per function, with inline policies instead of the
	// AWSLambdaBasicExecutionRole managed policy: log writes are limited to
	// the function's own log group.
	role := awsiam.NewRole(r.Construct, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("amirotate " + spec.Name + " function"),
		// The path names amirotate's roles in the SCP that reserves its tags
		// to them (deploy/scp-reserve-amirotate-tags.json).
		Path: jsii.String(RolePath),
		InlinePolicies: &map[string]awsiam.PolicyDocument{
			"Logs": awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{
				Statements: &[]awsiam.PolicyStatement{
					awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
						Sid:       jsii.String("WriteOwnLogGroup"),
						Actions:   jsii.Strings("logs:CreateLogStream", "logs:PutLogEvents"),
						Resources: jsii.Strings(*logGroup.LogGroupArn()),
					}),
				},
			}),
		},
	})
	// The local EC2 finds each step's role by this tag (internal/iamsim).
	awscdk.Tags_Of(role).Add(jsii.String(ec2x.RoleStepTag), jsii.String(spec.Name), nil)
	if statements := perms.statements(spec.Name); len(statements) > 0 {
		awsiam.NewPolicy(r.Construct, jsii.String(id+"Api"), &awsiam.PolicyProps{
			Roles:      &[]awsiam.IRole{role},
			Statements: &statements,
		})
	}

	fn := awslambda.NewFunction(r.Construct, jsii.String(id+"Function"), &awslambda.FunctionProps{
		Description:   jsii.String("amirotate: " + spec.Description),
		Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:  awslambda.Architecture_ARM_64(),
		Handler:       jsii.String("bootstrap"),
		Code:          awslambda.Code_FromAsset(jsii.String(filepath.Join(p.AssetDir, spec.Name)), nil),
		MemorySize:    jsii.Number(spec.MemoryMB),
		Timeout:       awscdk.Duration_Seconds(jsii.Number(spec.Timeout.Seconds())),
		Role:          role,
		LogGroup:      logGroup,
		LoggingFormat: awslambda.LoggingFormat_JSON,
		Tracing:       awslambda.Tracing_ACTIVE,
		// The policies the functions accept, whatever an execution input
		// says: whoever may start an execution cannot bring their own.
		Environment: &map[string]*string{rotation.PinsEnv: jsii.String(pinnedPolicies(p).String())},
	})
	return fn
}

// titleCase turns a step name into a construct id prefix ("snapshot" → "Snapshot").
func titleCase(s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	if b[0] >= 'a' && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	return string(b)
}

// RolePath is the IAM path of every function's role.
const RolePath = "/amirotate/"

// pinnedPolicies are the digests of the stack's policies.
func pinnedPolicies(p *RotationProps) rotation.Pins {
	var policies []rotation.Policy
	for _, ps := range p.Policies {
		policies = append(policies, ps.Policy)
	}
	return rotation.PinPolicies(policies...)
}
