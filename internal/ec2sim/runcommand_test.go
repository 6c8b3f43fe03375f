package ec2sim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

func (e *env) instance(t *testing.T, spec InstanceSpec) string {
	t.Helper()
	id, err := e.sim.RunInstance("us-east-1", spec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) send(t *testing.T, doc string, params map[string][]string, ids ...string) string {
	t.Helper()
	out, err := e.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(doc), Parameters: params, InstanceIds: ids})
	if err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	if out.Command.Status != ssmtypes.CommandStatusPending || out.Command.TargetCount != int32(len(ids)) {
		t.Fatalf("SendCommand answered %s with %d targets", out.Command.Status, out.Command.TargetCount)
	}
	return *out.Command.CommandId
}

func (e *env) invocation(t *testing.T, cmd, inst string) *ssm.GetCommandInvocationOutput {
	t.Helper()
	out, err := e.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(inst)})
	if err != nil {
		t.Fatalf("GetCommandInvocation: %v", err)
	}
	return out
}

func wantInvocation(t *testing.T, got *ssm.GetCommandInvocationOutput, status ssmtypes.CommandInvocationStatus, details string, code int32) {
	t.Helper()
	if got.Status != status || aws.ToString(got.StatusDetails) != details || got.ResponseCode != code {
		t.Fatalf("invocation %s/%s code %d, want %s/%s code %d", got.Status, aws.ToString(got.StatusDetails), got.ResponseCode, status, details, code)
	}
}

// newImage makes an available image of a seeded instance.
func (e *env) newImage(t *testing.T, name string) string {
	t.Helper()
	out, err := e.ec2.CreateImage(context.Background(), &ec2.CreateImageInput{InstanceId: aws.String(e.instance(t, InstanceSpec{})), Name: aws.String(name), NoReboot: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	return *out.ImageId
}

var shell = map[string][]string{"commands": {"echo hello"}}

func TestRunCommand_RegistersThenRunsThenSucceeds(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{})
	if err := e.sim.ScriptCommands(CommandScript{Document: "AWS-RunShellScript", Outcome: ScriptSucceed, After: 30 * time.Second, Output: "hello\n"}); err != nil {
		t.Fatal(err)
	}
	cmd := e.send(t, "AWS-RunShellScript", shell, inst)
	// Not yet registered: InvocationDoesNotExist, and no invocation listed.
	_, err := e.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(inst)})
	var dne *ssmtypes.InvocationDoesNotExist
	if !errors.As(err, &dne) {
		t.Fatalf("before registration: %v, want InvocationDoesNotExist", err)
	}
	if l, err := e.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(cmd)}); err != nil || len(l.CommandInvocations) != 0 {
		t.Fatalf("listed before registration: %+v %v", l, err)
	}
	e.clock.Advance(time.Second)
	got := e.invocation(t, cmd, inst)
	wantInvocation(t, got, ssmtypes.CommandInvocationStatusInProgress, "InProgress", -1)
	if aws.ToString(got.PluginName) != "aws:runShellScript" || aws.ToString(got.ExecutionStartDateTime) == "" {
		t.Errorf("plugin %q start %q", aws.ToString(got.PluginName), aws.ToString(got.ExecutionStartDateTime))
	}
	e.clock.Advance(30 * time.Second)
	got = e.invocation(t, cmd, inst)
	wantInvocation(t, got, ssmtypes.CommandInvocationStatusSuccess, "Success", 0)
	if aws.ToString(got.StandardOutputContent) != "hello\n" || aws.ToString(got.ExecutionElapsedTime) != "PT30S" {
		t.Errorf("output %q elapsed %q", aws.ToString(got.StandardOutputContent), aws.ToString(got.ExecutionElapsedTime))
	}
	cmds, err := e.ssm.ListCommands(context.Background(), &ssm.ListCommandsInput{CommandId: aws.String(cmd)})
	if err != nil || len(cmds.Commands) != 1 || cmds.Commands[0].Status != ssmtypes.CommandStatusSuccess || cmds.Commands[0].CompletedCount != 1 {
		t.Fatalf("ListCommands: %+v %v", cmds, err)
	}
	l, err := e.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(cmd), Details: true})
	if err != nil || len(l.CommandInvocations) != 1 || len(l.CommandInvocations[0].CommandPlugins) != 1 || l.CommandInvocations[0].CommandPlugins[0].ResponseFinishDateTime == nil {
		t.Fatalf("ListCommandInvocations: %+v %v", l, err)
	}
	if _, err := e.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(inst), PluginName: aws.String("nope")}); err == nil {
		t.Fatal("unknown plugin name accepted")
	} else {
		wantCode(t, err, "InvalidPluginName", http.StatusBadRequest)
	}
}

// advancing moves the manual clock in the background so that the SDK's
// waiters, which sleep on the wall clock, see the simulator's time pass.
func advancing(t *testing.T, e *env, step time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			e.clock.Advance(step)
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

func TestRunCommand_CommandExecutedWaiter(t *testing.T) {
	e := newEnv(t, Options{})
	ok, bad := e.instance(t, InstanceSpec{}), e.instance(t, InstanceSpec{})
	if err := e.sim.ScriptCommands(CommandScript{InstanceID: bad, Outcome: ScriptFail, ExitCode: 3, After: time.Minute, Output: "boom"}); err != nil {
		t.Fatal(err)
	}
	cmd := e.send(t, "AWS-RunShellScript", shell, ok, bad)
	advancing(t, e, time.Second)
	w := ssm.NewCommandExecutedWaiter(e.ssm, func(o *ssm.CommandExecutedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 5*time.Millisecond, 10*time.Millisecond
	})
	if err := w.Wait(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(ok)}, 10*time.Second); err != nil {
		t.Fatalf("waiting for the good instance: %v", err)
	}
	if err := w.Wait(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(bad)}, 10*time.Second); err == nil {
		t.Fatal("the waiter accepted a failed command")
	}
	got := e.invocation(t, cmd, bad)
	wantInvocation(t, got, ssmtypes.CommandInvocationStatusFailed, "Failed", 3)
	if aws.ToString(got.StandardErrorContent) != "boom" {
		t.Errorf("stderr %q", aws.ToString(got.StandardErrorContent))
	}
	cmds, _ := e.ssm.ListCommands(context.Background(), &ssm.ListCommandsInput{CommandId: aws.String(cmd)})
	if c := cmds.Commands[0]; c.Status != ssmtypes.CommandStatusFailed || c.ErrorCount != 1 || c.CompletedCount != 2 {
		t.Fatalf("command %s errors %d completed %d", c.Status, c.ErrorCount, c.CompletedCount)
	}
}

func TestRunCommand_HangEndsAtExecutionTimeout(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{})
	_ = e.sim.ScriptCommands(CommandScript{Outcome: ScriptHang, Count: 1})
	cmd := e.send(t, "AWS-RunShellScript", map[string][]string{"commands": {"sleep infinity"}, "executionTimeout": {"60"}}, inst)
	e.clock.Advance(60 * time.Second)
	wantInvocation(t, e.invocation(t, cmd, inst), ssmtypes.CommandInvocationStatusInProgress, "InProgress", -1)
	e.clock.Advance(time.Second)
	wantInvocation(t, e.invocation(t, cmd, inst), ssmtypes.CommandInvocationStatusTimedOut, "ExecutionTimedOut", 137)
	// The script was used once: the next command succeeds.
	cmd2 := e.send(t, "AWS-RunShellScript", shell, inst)
	e.clock.Advance(2 * time.Second)
	wantInvocation(t, e.invocation(t, cmd2, inst), ssmtypes.CommandInvocationStatusSuccess, "Success", 0)
}

func TestRunCommand_OfflineAgentDeliveryTimesOut(t *testing.T) {
	e := newEnv(t, Options{})
	offline := e.instance(t, InstanceSpec{Agent: AgentOffline})
	late := e.instance(t, InstanceSpec{Agent: AgentOffline})
	out, err := e.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"),
		Parameters: shell, InstanceIds: []string{offline, late}, TimeoutSeconds: aws.Int32(60)})
	if err != nil {
		t.Fatal(err)
	}
	cmd := *out.Command.CommandId
	e.clock.Advance(10 * time.Second)
	wantInvocation(t, e.invocation(t, cmd, offline), ssmtypes.CommandInvocationStatusDelayed, "Delayed", -1)
	// The other agent comes back within the delivery timeout: the command runs then.
	if err := e.sim.SetAgent("us-east-1", late, AgentOnline); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(50 * time.Second)
	wantInvocation(t, e.invocation(t, cmd, offline), ssmtypes.CommandInvocationStatusTimedOut, "DeliveryTimedOut", -1)
	got := e.invocation(t, cmd, late)
	wantInvocation(t, got, ssmtypes.CommandInvocationStatusSuccess, "Success", 0)
	if want := execTime(testStart.Add(10 * time.Second)); aws.ToString(got.ExecutionStartDateTime) != want {
		t.Errorf("started %s, want %s (when the agent came back)", aws.ToString(got.ExecutionStartDateTime), want)
	}
	info, err := e.ssm.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{
		Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("PingStatus"), Values: []string{"ConnectionLost"}}}})
	if err != nil || len(info.InstanceInformationList) != 1 || *info.InstanceInformationList[0].InstanceId != offline {
		t.Fatalf("ConnectionLost nodes: %+v %v", info, err)
	}
}

func TestRunCommand_RefusesWhatItCannotRun(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{})
	unmanaged := e.instance(t, InstanceSpec{Agent: AgentUnmanaged})
	gone := e.instance(t, InstanceSpec{})
	if _, err := e.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.AddDocument("us-east-1", Document{Name: "WindowsOnly", Platforms: []string{"Windows"}, Parameters: []DocumentParameter{{Name: "Action"}}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		doc    string
		params map[string][]string
		ids    []string
		code   string
	}{
		{"unknown document", "NoSuchDocument", shell, []string{inst}, "InvalidDocument"},
		{"undeclared parameter", "AWS-RunShellScript", map[string][]string{"commands": {"x"}, "bogus": {"1"}}, []string{inst}, "InvalidParameters"},
		{"missing required parameter", "AWS-RunShellScript", map[string][]string{}, []string{inst}, "InvalidParameters"},
		{"execution timeout out of range", "AWS-RunShellScript", map[string][]string{"commands": {"x"}, "executionTimeout": {"0"}}, []string{inst}, "InvalidParameters"},
		{"not a managed node", "AWS-RunShellScript", shell, []string{unmanaged}, "InvalidInstanceId"},
		{"terminated", "AWS-RunShellScript", shell, []string{gone}, "InvalidInstanceId"},
		{"no such instance", "AWS-RunShellScript", shell, []string{"i-0123456789abcdef0"}, "InvalidInstanceId"},
		{"twice the same instance", "AWS-RunShellScript", shell, []string{inst, inst}, "DuplicateInstanceId"},
		{"platform", "WindowsOnly", map[string][]string{"Action": {"Freeze"}}, []string{inst}, "UnsupportedPlatformType"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(c.doc), Parameters: c.params, InstanceIds: c.ids})
			wantCode(t, err, c.code, http.StatusBadRequest)
		})
	}
	if len(e.sim.Commands("")) != 0 {
		t.Fatalf("refused commands were recorded: %+v", e.sim.Commands(""))
	}
	// A custom document for the right platform runs.
	win := e.instance(t, InstanceSpec{Windows: true})
	cmd := e.send(t, "WindowsOnly", map[string][]string{"Action": {"Freeze"}}, win)
	e.clock.Advance(2 * time.Second)
	wantInvocation(t, e.invocation(t, cmd, win), ssmtypes.CommandInvocationStatusSuccess, "Success", 0)
}

func TestRunCommand_TerminatedBeforeDeliveryIsUndeliverable(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{Agent: AgentOffline})
	cmd := e.send(t, "AWS-RunShellScript", shell, inst)
	e.clock.Advance(5 * time.Second)
	if _, err := e.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{inst}}); err != nil {
		t.Fatal(err)
	}
	wantInvocation(t, e.invocation(t, cmd, inst), ssmtypes.CommandInvocationStatusFailed, "Undeliverable", -1)
}

func TestRunCommand_CancelCommand(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{})
	_ = e.sim.ScriptCommands(CommandScript{Outcome: ScriptHang})
	cmd := e.send(t, "AWS-RunShellScript", shell, inst)
	e.clock.Advance(5 * time.Second)
	if _, err := e.ssm.CancelCommand(context.Background(), &ssm.CancelCommandInput{CommandId: aws.String(cmd)}); err != nil {
		t.Fatal(err)
	}
	wantInvocation(t, e.invocation(t, cmd, inst), ssmtypes.CommandInvocationStatusCancelled, "Cancelled", -1)
	cmds, _ := e.ssm.ListCommands(context.Background(), &ssm.ListCommandsInput{Filters: []ssmtypes.CommandFilter{{Key: ssmtypes.CommandFilterKeyStatus, Value: aws.String("Cancelled")}}})
	if len(cmds.Commands) != 1 || *cmds.Commands[0].CommandId != cmd {
		t.Fatalf("cancelled commands: %+v", cmds.Commands)
	}
	_, err := e.ssm.CancelCommand(context.Background(), &ssm.CancelCommandInput{CommandId: aws.String("00000000-0000-4000-8000-000000000000")})
	wantCode(t, err, "InvalidCommandId", http.StatusBadRequest)
}

func TestRunCommand_ListsPage(t *testing.T) {
	e := newEnv(t, Options{InvocationDelay: -1})
	var ids []string
	for range 12 {
		ids = append(ids, e.instance(t, InstanceSpec{Tags: map[string]string{"Team": "db"}}))
	}
	cmd := e.send(t, "AWS-RunShellScript", shell, ids...)
	n := 0
	for p := ssm.NewListCommandInvocationsPaginator(e.ssm, &ssm.ListCommandInvocationsInput{CommandId: aws.String(cmd), MaxResults: aws.Int32(5)}); p.HasMorePages(); {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.CommandInvocations)
	}
	if n != 12 {
		t.Fatalf("listed %d invocations, want 12", n)
	}
	n = 0
	for p := ssm.NewDescribeInstanceInformationPaginator(e.ssm, &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(5),
		Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("tag:Team"), Values: []string{"db"}}}}); p.HasMorePages(); {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range page.InstanceInformationList {
			if info.PingStatus != ssmtypes.PingStatusOnline || info.PlatformType != ssmtypes.PlatformTypeLinux {
				t.Errorf("%s: %s %s", *info.InstanceId, info.PingStatus, info.PlatformType)
			}
		}
		n += len(page.InstanceInformationList)
	}
	if n != 12 {
		t.Fatalf("described %d managed nodes, want 12", n)
	}
}

func TestManagedNodes_RunInstancesWithAProfileRegisters(t *testing.T) {
	e := newEnv(t, Options{})
	launch := func(profile string) string {
		in := &ec2.RunInstancesInput{ImageId: aws.String(BaseImageID("us-east-1")), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("amirotate:verify"), Value: aws.String("x")}}}}}
		if profile != "" {
			in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Name: aws.String(profile)}
		}
		out, err := e.ec2.RunInstances(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Instances[0].Tags) != 1 {
			t.Fatalf("tags %+v", out.Instances[0].Tags)
		}
		return *out.Instances[0].InstanceId
	}
	managed, bare := launch("ssm-core"), launch("")
	info, err := e.ssm.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{
		InstanceInformationFilterList: []ssmtypes.InstanceInformationFilter{{Key: ssmtypes.InstanceInformationFilterKeyInstanceIds, ValueSet: []string{managed, bare}}}})
	if err != nil || len(info.InstanceInformationList) != 1 || *info.InstanceInformationList[0].InstanceId != managed {
		t.Fatalf("managed nodes %+v %v", info, err)
	}
	if aws.ToString(info.InstanceInformationList[0].IamRole) != "ssm-core" {
		t.Errorf("role %q", aws.ToString(info.InstanceInformationList[0].IamRole))
	}
	_, err = e.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), Parameters: shell, InstanceIds: []string{bare}})
	wantCode(t, err, "InvalidInstanceId", http.StatusBadRequest)
	// Stopped: ConnectionLost.
	if _, err := e.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{managed}}); err != nil {
		t.Fatal(err)
	}
	info, _ = e.ssm.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{})
	if len(info.InstanceInformationList) != 1 || info.InstanceInformationList[0].PingStatus != ssmtypes.PingStatusConnectionLost {
		t.Fatalf("stopped node: %+v", info.InstanceInformationList)
	}
}

func TestInstanceStatus_InitializingThenOkOrImpaired(t *testing.T) {
	e := newEnv(t, Options{StatusCheckDelay: 2 * time.Minute})
	bad := e.newImage(t, "bad-checks")
	if err := e.sim.ImpairImage("us-east-1", bad, CheckInstance); err != nil {
		t.Fatal(err)
	}
	launch := func(image string) string {
		out, err := e.ec2.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		return *out.Instances[0].InstanceId
	}
	good, failing := launch(BaseImageID("us-east-1")), launch(bad)
	status := func(id string) ec2types.InstanceStatus {
		t.Helper()
		out, err := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{id}})
		if err != nil || len(out.InstanceStatuses) != 1 {
			t.Fatalf("DescribeInstanceStatus %s: %+v %v", id, out, err)
		}
		return out.InstanceStatuses[0]
	}
	if s := status(good); s.InstanceStatus.Status != ec2types.SummaryStatusInitializing || s.SystemStatus.Status != ec2types.SummaryStatusInitializing {
		t.Fatalf("new instance: %s/%s", s.SystemStatus.Status, s.InstanceStatus.Status)
	}
	e.clock.Advance(2 * time.Minute)
	if s := status(good); s.InstanceStatus.Status != ec2types.SummaryStatusOk || s.InstanceStatus.Details[0].Status != ec2types.StatusTypePassed {
		t.Fatalf("good instance: %+v", s.InstanceStatus)
	}
	s := status(failing)
	if s.SystemStatus.Status != ec2types.SummaryStatusOk || s.InstanceStatus.Status != ec2types.SummaryStatusImpaired ||
		s.InstanceStatus.Details[0].Status != ec2types.StatusTypeFailed || s.InstanceStatus.Details[0].ImpairedSince == nil {
		t.Fatalf("failing instance: %+v / %+v", s.SystemStatus, s.InstanceStatus)
	}
	// Only running instances, unless IncludeAllInstances.
	if _, err := e.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{good}}); err != nil {
		t.Fatal(err)
	}
	out, _ := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{good}})
	if len(out.InstanceStatuses) != 0 {
		t.Fatalf("stopped instance described: %+v", out.InstanceStatuses)
	}
	out, _ = e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{good}, IncludeAllInstances: aws.Bool(true)})
	if len(out.InstanceStatuses) != 1 || out.InstanceStatuses[0].InstanceStatus.Status != ec2types.SummaryStatusNotApplicable {
		t.Fatalf("IncludeAllInstances: %+v", out.InstanceStatuses)
	}
	out, _ = e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-status.status"), Values: []string{"impaired"}}}})
	if len(out.InstanceStatuses) != 1 || *out.InstanceStatuses[0].InstanceId != failing {
		t.Fatalf("impaired filter: %+v", out.InstanceStatuses)
	}
	_, err := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInstanceID.NotFound", http.StatusBadRequest)
}

func TestInstanceStatus_Waiters(t *testing.T) {
	e := newEnv(t, Options{StatusCheckDelay: time.Minute, InstanceDelay: 10 * time.Second})
	bad := e.newImage(t, "bad-system")
	_ = e.sim.ImpairImage("us-east-1", bad, CheckSystem)
	run := func(image string) string {
		out, err := e.ec2.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		return *out.Instances[0].InstanceId
	}
	good, failing := run(BaseImageID("us-east-1")), run(bad)
	advancing(t, e, time.Second)
	opts := func(o *ec2.InstanceStatusOkWaiterOptions) {
		o.MinDelay, o.MaxDelay = 5*time.Millisecond, 10*time.Millisecond
	}
	if err := ec2.NewInstanceStatusOkWaiter(e.ec2, opts).Wait(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{good}}, 10*time.Second); err != nil {
		t.Fatalf("status ok waiter: %v", err)
	}
	sysOpts := func(o *ec2.SystemStatusOkWaiterOptions) {
		o.MinDelay, o.MaxDelay = 5*time.Millisecond, 10*time.Millisecond
	}
	err := ec2.NewSystemStatusOkWaiter(e.ec2, sysOpts).Wait(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{failing}}, 300*time.Millisecond)
	if err == nil {
		t.Fatal("an impaired system check passed the waiter")
	}
	out, _ := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{failing}})
	if s := out.InstanceStatuses[0]; s.SystemStatus.Status != ec2types.SummaryStatusImpaired || s.InstanceStatus.Status != ec2types.SummaryStatusOk {
		t.Fatalf("failing instance: %s/%s", s.SystemStatus.Status, s.InstanceStatus.Status)
	}
}

func TestAdmin_ScriptsAgentsAndStatusChecks(t *testing.T) {
	e := newEnv(t, Options{})
	inst := e.instance(t, InstanceSpec{})
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post(e.srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s %s: %d", path, body, resp.StatusCode)
		}
	}
	post("/_sim/scripts", `{"instanceId":"`+inst+`","outcome":"fail","after":"5s","exitCode":2}`)
	cmd := e.send(t, "AWS-RunShellScript", shell, inst)
	e.clock.Advance(6 * time.Second)
	wantInvocation(t, e.invocation(t, cmd, inst), ssmtypes.CommandInvocationStatusFailed, "Failed", 2)
	post("/_sim/agents", `{"region":"us-east-1","instanceId":"`+inst+`","state":"Unmanaged"}`)
	_, err := e.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), Parameters: shell, InstanceIds: []string{inst}})
	wantCode(t, err, "InvalidInstanceId", http.StatusBadRequest)
	post("/_sim/status-checks", `{"imageId":"`+BaseImageID("us-east-1")+`","check":"system"}`)
	out, _ := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{inst}})
	if out.InstanceStatuses[0].SystemStatus.Status != ec2types.SummaryStatusImpaired {
		t.Fatalf("system status %s", out.InstanceStatuses[0].SystemStatus.Status)
	}
	resp, err := http.Post(e.srv.URL+"/_sim/scripts", "application/json", strings.NewReader(`{"outcome":"explode"}`))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad script was accepted: %v %v", resp, err)
	}
}
