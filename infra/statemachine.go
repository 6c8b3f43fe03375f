package infra

import (
	"regexp"
	"sort"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/jsii-runtime-go"
)

// eventBusName receives the "AMI Rotation Completed" event of every
// rotation (source "amirotate", detail = the rotation's summary).
const eventBusName = "default"

// substitutionNames are the ${...} placeholders the definition may use.
func substitutionNames() []string {
	names := []string{"EventBusName"}
	for _, spec := range functionSpecs {
		names = append(names, titleCase(spec.Name)+"FunctionArn")
	}
	sort.Strings(names)
	return names
}

var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// missingSubstitutions lists placeholders of the definition that have no value.
func missingSubstitutions(definition string) []string {
	known := map[string]bool{}
	for _, n := range substitutionNames() {
		known[n] = true
	}
	var missing []string
	seen := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(definition, -1) {
		if !known[m[1]] && !seen[m[1]] {
			seen[m[1]] = true
			missing = append(missing, m[1])
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
func newStateMachine(r *Rotation, p *RotationProps, definition string) awsstepfunctions.StateMachine {
	logGroup := awslogs.NewLogGroup(r.Construct, jsii.String("StateMachineLogs"), &awslogs.LogGroupProps{
		// The /aws/vendedlogs/ prefix keeps the CloudWatch Logs resource
		// policy Step Functions log delivery needs within its size limit.
		LogGroupName: jsii.String("/aws/vendedlogs/states/" + *stackOf(r.Construct).StackName() + "-" + *r.Node().Addr()),
		Retention:    p.LogRetention,
	})
	subs := map[string]*string{"EventBusName": jsii.String(eventBusName)}
	for _, spec := range functionSpecs {
		subs[titleCase(spec.Name)+"FunctionArn"] = r.Functions[spec.Name].FunctionArn()
	}
	sm := awsstepfunctions.NewStateMachine(r.Construct, jsii.String("StateMachine"), &awsstepfunctions.StateMachineProps{
		Comment:                 jsii.String("amirotate: one rotation of one policy"),
		StateMachineType:        awsstepfunctions.StateMachineType_STANDARD,
		DefinitionBody:          awsstepfunctions.DefinitionBody_FromString(jsii.String(definition)),
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
