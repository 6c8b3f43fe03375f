package ec2x

import (
	"maps"
	"path"
	"reflect"
	"slices"
)

// Step names: each is a Lambda function (functions/<name>), the state
// machine's ${<Name>FunctionArn} and an IAM role.
const (
	StepDiscover  = "discover"
	StepScripts   = "scripts"
	StepSnapshot  = "snapshot"
	StepPoll      = "poll"
	StepCopy      = "copy"
	StepVerify    = "verify"
	StepTag       = "tag"
	StepPublish   = "publish"
	StepRoll      = "roll"
	StepRetention = "retention"
	StepReport    = "report"
)

// Steps lists every step once, in the order a rotation runs them. The
// state machine's placeholders, the CDK functions, the local run's handlers
// and the Makefile's builds (functions/ checked against it) all follow it.
var Steps = []string{StepDiscover, StepScripts, StepSnapshot, StepPoll, StepCopy, StepVerify, StepTag, StepPublish, StepRoll, StepRetention, StepReport}

// Permissions maps each step to the client interfaces its handler uses.
// It is the single source of the IAM policy: infra grants exactly Actions(step).
var Permissions = map[string][]reflect.Type{
	StepDiscover:  {reflect.TypeFor[DiscoverEC2]()},
	StepScripts:   {reflect.TypeFor[ScriptsSSM]()},
	StepSnapshot:  {reflect.TypeFor[SnapshotEC2](), reflect.TypeFor[SnapshotKMS]()},
	StepPoll:      {reflect.TypeFor[PollEC2]()},
	StepCopy:      {reflect.TypeFor[CopyEC2]()},
	StepVerify:    {reflect.TypeFor[VerifyEC2](), reflect.TypeFor[VerifySSM]()},
	StepTag:       {reflect.TypeFor[TagEC2]()},
	StepPublish:   {reflect.TypeFor[PublishEC2](), reflect.TypeFor[PublishSSM]()},
	StepRoll:      {reflect.TypeFor[RollAutoScaling]()},
	StepRetention: {reflect.TypeFor[RetentionEC2](), reflect.TypeFor[RetentionAutoScaling]()},
	StepReport:    {},
}

// Actions returns the sorted IAM actions ("ec2:CreateImage") the step's
// handler may call, derived from the method names of its interfaces. The
// service prefix is the SDK package of each method's input type (service/ec2
// → "ec2", service/ssm → "ssm", service/autoscaling → "autoscaling"), which
// matches the IAM service prefix for these three services. An unknown step
// has no actions.
func Actions(step string) []string {
	seen := map[string]bool{}
	for _, it := range Permissions[step] {
		for i := 0; i < it.NumMethod(); i++ {
			m := it.Method(i)
			seen[servicePrefix(m.Type)+":"+m.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// servicePrefix reads the service from the method's input parameter type
// (func(context.Context, *ec2.XInput, ...func(*ec2.Options))).
func servicePrefix(fn reflect.Type) string {
	if fn.NumIn() < 2 {
		return ""
	}
	in := fn.In(1)
	for in.Kind() == reflect.Pointer {
		in = in.Elem()
	}
	return path.Base(in.PkgPath())
}
