package infra

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// StackProps are the stack's: the CDK stack props and the rotation.
type StackProps struct {
	awscdk.StackProps
	Rotation RotationProps
}

// Stack is the deployable unit: the Rotation construct and its outputs.
type Stack struct {
	awscdk.Stack
	Rotation *Rotation
}

// NewStack creates the stack with a Rotation and outputs for the pieces
// people and scripts look for.
func NewStack(scope constructs.Construct, id string, props *StackProps) (*Stack, error) {
	var sp awscdk.StackProps
	if props != nil {
		sp = props.StackProps
	}
	if sp.Description == nil {
		sp.Description = jsii.String("amirotate: scheduled, safe AMI rotation")
	}
	stack := awscdk.NewStack(scope, jsii.String(id), &sp)
	var rp *RotationProps
	if props != nil {
		rp = &props.Rotation
	}
	r, err := NewRotation(stack, "Rotation", rp)
	if err != nil {
		return nil, err
	}
	awscdk.NewCfnOutput(stack, jsii.String("StateMachineArn"), &awscdk.CfnOutputProps{
		Description: jsii.String("Start a manual rotation: aws stepfunctions start-execution --state-machine-arn <this> --input file://input.json"),
		Value:       r.StateMachine.StateMachineArn(),
	})
	awscdk.NewCfnOutput(stack, jsii.String("AlarmTopicArn"), &awscdk.CfnOutputProps{
		Description: jsii.String("Receives the failed-rotation alarm"),
		Value:       r.AlarmTopic.TopicArn(),
	})
	return &Stack{Stack: stack, Rotation: r}, nil
}
