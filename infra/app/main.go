// Command app is the CDK app: `npx aws-cdk synth|deploy` runs it (cdk.json)
// from the repository root.
//
// Context (cdk.json, or -c key=value on the command line):
//
//	policiesFile    the deployment file (default deploy/policies.json)
//	assetDir        the built function binaries (default dist)
//	stackName       the stack (default Amirotate)
//	nag             "false" skips the cdk-nag AwsSolutions checks
package main

import (
	"fmt"
	"os"

	// Schedules name IANA time zones; validating them must not depend on
	// the machine's zoneinfo.
	_ "time/tzdata"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/amirotate/amirotate/infra"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "amirotate cdk: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	app := awscdk.NewApp(nil)
	ctx := func(key, def string) string {
		if v, ok := app.Node().TryGetContext(jsii.String(key)).(string); ok && v != "" {
			return v
		}
		return def
	}
	cfg, err := infra.LoadConfig(ctx("policiesFile", "deploy/policies.json"))
	if err != nil {
		return err
	}
	rp, err := cfg.Props(ctx("assetDir", infra.DefaultAssetDir))
	if err != nil {
		return err
	}
	var env *awscdk.Environment
	// Set by the CDK CLI from the current credentials; without them the
	// stack is environment-agnostic (account and region resolved at deploy).
	if account, region := os.Getenv("CDK_DEFAULT_ACCOUNT"), os.Getenv("CDK_DEFAULT_REGION"); account != "" && region != "" {
		env = &awscdk.Environment{Account: jsii.String(account), Region: jsii.String(region)}
	}
	if _, err := infra.NewStack(app, ctx("stackName", "Amirotate"), &infra.StackProps{
		StackProps: awscdk.StackProps{Env: env},
		Rotation:   *rp,
	}); err != nil {
		return err
	}
	if ctx("nag", "true") != "false" {
		awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	}
	app.Synth(nil)
	return nil
}
