package infra

import (
	"sort"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/jsii-runtime-go"

	"github.com/amirotate/amirotate/statemachine"
)

// eventBusName receives the "AMI Rotation Completed" event of every
// rotation (source "amirotate", detail = the rotation's summary).
const eventBusName = "default"

// substitutions are the values of the definition's ${...} placeholders.
func substitutions(r *Rotation) map[string]*string {
	subs := map[string]*string{statemachine.EventBusKey: jsii.String(eventBusName)}
	for _, spec := range functionSpecs {
		subs[statemachine.FunctionKey(spec.Name)] = r.Functions[spec.Name].FunctionArn()
	}
	return subs
}

// missingSubstitutions lists placeholders of the definition that have no value.
func missingSubstitutions(definition []byte) []string {
	known := map[string]bool{statemachine.EventBusKey: true}
	for _, spec := range functionSpecs {
		known[statemachine.FunctionKey(spec.Name)] = true
	}
	var missing []string
	for _, name := range statemachine.Placeholders(definition) {
		if !known[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing
}

// newStateMachine creates the Standard state machine from the ASL file (the
// one the local runner executes), with the function ARNs substituted.
//
// The definition is inlined (DefinitionString) rather than uploaded as an S3
// asset, so `cdk diff` shows a reviewer every change to it.
//
// Logging: level ALL (every state transition, so a stuck or failed rotation
// can be followed in CloudWatch Logs), without execution data: inputs and
// outputs are already in the execution history for 90 days, the summary goes
// out as an event, and copying every poll loop's payload (up to 256 KiB,
// including instance tag values copied onto images) into a log group kept
// for months would multiply log volume and cost for no new information.
func newStateMachine(r *Rotation, p *RotationProps, definition []byte) awsstepfunctions.StateMachine {
	logGroup := awslogs.NewLogGroup(r.Construct, jsii.String("StateMachineLogs"), &awslogs.LogGroupProps{
		// The /aws/vendedlogs/ prefix keeps the CloudWatch Logs resource
		// policy Step Functions log delivery needs within its size limit.
		LogGroupName: jsii.String("/aws/vendedlogs/states/" + *stackOf(r.Construct).StackName() + "-" + *r.Node().Addr()),
		Retention:    p.LogRetention,
	})
	subs := substitutions(r)
	sm := awsstepfunctions.NewStateMachine(r.Construct, jsii.String("StateMachine"), &awsstepfunctions.StateMachineProps{
		Comment:                 jsii.String("amirotate: one rotation of one policy"),
		StateMachineType:        awsstepfunctions.StateMachineType_STANDARD,
		DefinitionBody:          awsstepfunctions.DefinitionBody_FromString(jsii.String(string(definition))),
		DefinitionSubstitutions: &subs,
		Logs: &awsstepfunctions.LogOptions{
			Destination:          logGroup,
			Level:                awsstepfunctions.LogLevel_ALL,
			IncludeExecutionData: jsii.Bool(false),
		},
		TracingEnabled: jsii.Bool(true),
	})
	for _, st := range stateMachineStatements(r) {
		sm.AddToRolePolicy(st)
	}
	return sm
}
