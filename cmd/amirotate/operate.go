package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/amirotate/amirotate/internal/localrun"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

// The operator commands (start, status, watch) talk to the deployed state
// machine over the Step Functions API: in AWS, or in the local stack
// (`amirotate sim --stack`, with AWS_ENDPOINT_URL_SFN and
// AWS_ENDPOINT_URL_CLOUDFORMATION pointing at it).

// deployment names the state machine to talk to.
type deployment struct {
	stackName    string
	stateMachine string
}

func (d *deployment) flags(fs *flag.FlagSet) {
	fs.StringVar(&d.stackName, "stack-name", "Amirotate", "the deployed stack whose StateMachineArn output names the state machine")
	fs.StringVar(&d.stateMachine, "state-machine", "", "the state machine's `ARN or name` instead of the stack's output")
}

// operator holds the clients of the operator commands.
type operator struct {
	sfn    *sfn.Client
	cfn    *cloudformation.Client
	region string
	dep    deployment
}

func newOperator(ctx context.Context, dep deployment) (*operator, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no region: set AWS_REGION (or a profile's region), the region the stack is deployed in")
	}
	return &operator{sfn: sfn.NewFromConfig(cfg), cfn: cloudformation.NewFromConfig(cfg), region: cfg.Region, dep: dep}, nil
}

// notDeployed is the advice when no state machine is found.
func (o *operator) notDeployed(what string) error {
	return fmt.Errorf("%s in %s: deploy the stack (make deploy), name it with --stack-name or the state machine with --state-machine; "+
		"for the local stack run `amirotate sim --stack cdk.out/Amirotate.template.json` and set AWS_ENDPOINT_URL_SFN and AWS_ENDPOINT_URL_CLOUDFORMATION to it", what, o.region)
}

// stateMachineARN finds the state machine: --state-machine (an ARN, or a
// name listed by ListStateMachines), else the stack's StateMachineArn output.
func (o *operator) stateMachineARN(ctx context.Context) (string, error) {
	if sm := o.dep.stateMachine; sm != "" {
		if strings.HasPrefix(sm, "arn:") {
			return sm, nil
		}
		p := sfn.NewListStateMachinesPaginator(o.sfn, &sfn.ListStateMachinesInput{})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return "", fmt.Errorf("listing state machines: %w", err)
			}
			for _, m := range page.StateMachines {
				if aws.ToString(m.Name) == sm {
					return aws.ToString(m.StateMachineArn), nil
				}
			}
		}
		return "", o.notDeployed(fmt.Sprintf("no state machine named %q", sm))
	}
	out, err := o.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(o.dep.stackName)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" {
			return "", o.notDeployed(fmt.Sprintf("no stack %q", o.dep.stackName))
		}
		return "", fmt.Errorf("reading stack %s: %w", o.dep.stackName, err)
	}
	for _, s := range out.Stacks {
		for _, op := range s.Outputs {
			if aws.ToString(op.OutputKey) == "StateMachineArn" {
				return aws.ToString(op.OutputValue), nil
			}
		}
	}
	return "", o.notDeployed(fmt.Sprintf("stack %q has no StateMachineArn output (is it amirotate's?)", o.dep.stackName))
}

// deployedPolicy reads the policy a schedule of the stack sends: the
// policy the functions accept (they pin the deployed policies).
func (o *operator) deployedPolicy(ctx context.Context, name string) (json.RawMessage, error) {
	out, err := o.cfn.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String(o.dep.stackName)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" {
			return nil, o.notDeployed(fmt.Sprintf("no stack %q", o.dep.stackName))
		}
		return nil, fmt.Errorf("reading the template of stack %s: %w", o.dep.stackName, err)
	}
	var tmpl struct {
		Resources map[string]struct {
			Type       string `json:"Type"`
			Properties struct {
				Target struct {
					Input string `json:"Input"`
				} `json:"Target"`
			} `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.TemplateBody)), &tmpl); err != nil {
		return nil, fmt.Errorf("reading the template of stack %s: %w", o.dep.stackName, err)
	}
	var names []string
	for _, r := range tmpl.Resources {
		if r.Type != "AWS::Scheduler::Schedule" {
			continue
		}
		var in struct {
			Policy json.RawMessage `json:"policy"`
		}
		if json.Unmarshal([]byte(r.Properties.Target.Input), &in) != nil || in.Policy == nil {
			continue
		}
		var p struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(in.Policy, &p)
		if p.Name == name {
			return in.Policy, nil
		}
		names = append(names, p.Name)
	}
	return nil, fmt.Errorf("stack %s deploys no policy %q (it deploys: %s)", o.dep.stackName, name, dash(strings.Join(names, ", ")))
}

// runStart starts a manual rotation of a deployed policy.
func runStart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("start", stderr, "Usage: amirotate start --policy NAME [--instance ID]... [--dry-run] [--stack-name Amirotate]\n\n"+
		"Starts a manual rotation of a deployed policy and prints the execution's ARN\n"+
		"(follow it with amirotate watch).\n\n")
	var dep deployment
	dep.flags(fs)
	var policy string
	var ids stringList
	var dryRun bool
	fs.StringVar(&policy, "policy", "", "the deployed policy's `name`")
	fs.Var(&ids, "instance", "rotate only this instance `id` (repeatable; it must match the policy)")
	fs.BoolVar(&dryRun, "dry-run", false, "report what would happen, change nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if policy == "" || fs.NArg() > 0 {
		return errors.New("name the deployed policy: amirotate start --policy NAME")
	}
	o, err := newOperator(ctx, dep)
	if err != nil {
		return err
	}
	arn, err := o.stateMachineARN(ctx)
	if err != nil {
		return err
	}
	p, err := o.deployedPolicy(ctx, policy)
	if err != nil {
		return err
	}
	if dryRun {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return err
		}
		m["dryRun"] = true
		if p, err = json.Marshal(m); err != nil {
			return err
		}
	}
	// No rotationTime: the rotation is the execution's start.
	in := map[string]any{"policy": p, "trigger": rotation.TriggerManual}
	if len(ids) > 0 {
		in["instanceIds"] = []string(ids)
	}
	input, err := json.Marshal(in)
	if err != nil {
		return err
	}
	out, err := o.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(arn), Input: aws.String(string(input))})
	if err != nil {
		return fmt.Errorf("starting %s: %w", arn, err)
	}
	fmt.Fprintln(stdout, aws.ToString(out.ExecutionArn))
	return nil
}

// statusRow is one execution in `amirotate status`.
type statusRow struct {
	Execution string         `json:"executionArn"`
	Name      string         `json:"name"`
	Policy    string         `json:"policy"`
	Trigger   string         `json:"trigger"`
	Started   time.Time      `json:"started"`
	Stopped   *time.Time     `json:"stopped,omitempty"`
	Status    string         `json:"status"`
	Summary   *steps.Summary `json:"summary,omitempty"`
	Error     string         `json:"error,omitempty"`
	Cause     string         `json:"cause,omitempty"`
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr, "Usage: amirotate status [--policy NAME] [--max 20] [--json FILE] [--stack-name Amirotate]\n\n"+
		"Lists the recent rotations of the deployed state machine, newest first: trigger,\n"+
		"start, duration, result, images created and deleted, failures.\n\n")
	var dep deployment
	dep.flags(fs)
	var policy, jsonFile string
	var max int
	fs.StringVar(&policy, "policy", "", "only this policy's rotations")
	fs.IntVar(&max, "max", 20, "list at most this many `executions`")
	fs.StringVar(&jsonFile, "json", "", "also write the rows as JSON to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see amirotate status -h)", fs.Arg(0))
	}
	o, err := newOperator(ctx, dep)
	if err != nil {
		return err
	}
	arn, err := o.stateMachineARN(ctx)
	if err != nil {
		return err
	}
	var rows []statusRow
	p := sfn.NewListExecutionsPaginator(o.sfn, &sfn.ListExecutionsInput{StateMachineArn: aws.String(arn)})
	for p.HasMorePages() && len(rows) < max {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing the executions of %s: %w", arn, err)
		}
		for _, e := range page.Executions {
			row, err := o.statusOf(ctx, e)
			if err != nil {
				return err
			}
			if policy != "" && row.Policy != policy {
				continue
			}
			if rows = append(rows, row); len(rows) == max {
				break
			}
		}
	}
	printStatus(stdout, rows)
	if jsonFile != "" {
		if rows == nil {
			rows = []statusRow{}
		}
		return writeJSON(jsonFile, rows)
	}
	return nil
}

// statusOf describes one execution: its input (policy, trigger), and the
// rotation's summary from the Report state's output in its history.
func (o *operator) statusOf(ctx context.Context, e sfntypes.ExecutionListItem) (statusRow, error) {
	row := statusRow{Execution: aws.ToString(e.ExecutionArn), Name: aws.ToString(e.Name), Status: string(e.Status), Started: aws.ToTime(e.StartDate)}
	if e.StopDate != nil {
		row.Stopped = e.StopDate
	}
	d, err := o.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: e.ExecutionArn})
	if err != nil {
		return row, fmt.Errorf("describing %s: %w", row.Execution, err)
	}
	row.Error, row.Cause = aws.ToString(d.Error), aws.ToString(d.Cause)
	var in struct {
		Policy struct {
			Name string `json:"name"`
		} `json:"policy"`
		Trigger string `json:"trigger"`
	}
	_ = json.Unmarshal([]byte(aws.ToString(d.Input)), &in)
	row.Policy, row.Trigger = in.Policy.Name, in.Trigger
	h := sfn.NewGetExecutionHistoryPaginator(o.sfn, &sfn.GetExecutionHistoryInput{ExecutionArn: e.ExecutionArn, ReverseOrder: true, MaxResults: 100})
	for h.HasMorePages() {
		page, err := h.NextPage(ctx)
		if err != nil {
			return row, fmt.Errorf("reading the history of %s: %w", row.Execution, err)
		}
		for _, ev := range page.Events {
			if x := ev.StateExitedEventDetails; x != nil && aws.ToString(x.Name) == "Report" {
				var out steps.ReportOut
				if json.Unmarshal([]byte(aws.ToString(x.Output)), &out) == nil {
					row.Summary = &out.Summary
				}
				return row, nil
			}
		}
	}
	return row, nil
}

func printStatus(w io.Writer, rows []statusRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No rotations yet.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tPOLICY\tTRIGGER\tDURATION\tRESULT\tCREATED\tCOPIES\tDELETED\tFAILURES\tEXECUTION")
	for _, r := range rows {
		dur := "running"
		if r.Stopped != nil {
			dur = r.Stopped.Sub(r.Started).Round(time.Second).String()
		}
		created, copies, deleted, failures := "-", "-", "-", "-"
		if s := r.Summary; s != nil {
			created, copies, deleted = fmt.Sprint(s.ImagesCreated), fmt.Sprint(s.CopiesCreated), fmt.Sprint(s.ImagesDeleted)
			if n := s.ImagesFailed + s.CopiesFailed + s.RetentionFailed; n > 0 || s.Failed {
				failures = fmt.Sprintf("%d: %s", n, s.Cause)
			}
		}
		if r.Status != string(sfntypes.ExecutionStatusSucceeded) && r.Status != string(sfntypes.ExecutionStatusRunning) && failures == "-" {
			failures = causeText(r.Error, r.Cause)
		}
		if len(failures) > 100 {
			failures = failures[:97] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Started.UTC().Format("2006-01-02 15:04:05Z"), dash(r.Policy), dash(r.Trigger),
			dur, r.Status, created, copies, deleted, failures, r.Name)
	}
	tw.Flush()
}

// runWatch follows an execution from its history: the live progress and
// the summary table of `amirotate run`, and its exit status.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", stderr, "Usage: amirotate watch EXECUTION_ARN [--json FILE]\n\n"+
		"Follows a rotation of the deployed state machine until it ends, as amirotate run shows\n"+
		"one; exits 0 only when it succeeded.\n\n")
	var jsonFile string
	var every time.Duration
	fs.StringVar(&jsonFile, "json", "", "also write the summary as JSON to `file`")
	fs.DurationVar(&every, "poll", 2*time.Second, "how often to read the history")
	// The ARN may come before the flags.
	var arn string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arn, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if arn == "" && fs.NArg() > 0 {
		arn = fs.Arg(0)
	}
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":execution:") {
		return errors.New("name the execution: amirotate watch arn:aws:states:<region>:<account>:execution:<state machine>:<name> (amirotate start and status print it)")
	}
	o, err := newOperator(ctx, deployment{})
	if err != nil {
		return err
	}
	p := newProgress(stdout)
	defer p.stop()
	res := &localrun.Result{StatesEntered: map[string]int{}, DetailInputs: map[string][]json.RawMessage{}, DetailOutputs: map[string][]json.RawMessage{}}
	// The history is read page by page; the last page is read again on the
	// next poll (Step Functions gives no token past it), skipping the
	// events already seen by id.
	var token *string
	var seen int64
	var task string // the Task state a TaskFailed belongs to
	for {
		done := false
		for {
			page, err := o.sfn.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), NextToken: token, MaxResults: 500})
			if err != nil {
				return fmt.Errorf("reading the history of %s: %w", arn, err)
			}
			for _, ev := range page.Events {
				if ev.Id <= seen {
					continue
				}
				seen = ev.Id
				e, ok := historyEvent(ev, &task)
				if !ok {
					continue
				}
				noteResult(res, e)
				p.event(e)
				switch e.Type {
				case "ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut":
					done = true
				}
			}
			if page.NextToken == nil {
				break
			}
			token = page.NextToken
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	d, err := o.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("describing %s: %w", arn, err)
	}
	res.Status, res.Error, res.Cause = string(d.Status), aws.ToString(d.Error), aws.ToString(d.Cause)
	res.Output = json.RawMessage(aws.ToString(d.Output))
	if d.StopDate != nil {
		res.Duration = d.StopDate.Sub(aws.ToTime(d.StartDate))
	}
	rep, err := buildReport(res)
	if err != nil {
		return err
	}
	printReport(stdout, rep, 0)
	if jsonFile != "" {
		if err := writeJSON(jsonFile, rep); err != nil {
			return err
		}
	}
	if !res.Succeeded() {
		return fmt.Errorf("the rotation %s: %s", res.Status, res.Cause)
	}
	return nil
}

// historyEvent turns a Step Functions history event into the runner's
// event that progress prints (false: nothing to show).
func historyEvent(ev sfntypes.HistoryEvent, task *string) (localrun.Event, bool) {
	typ := string(ev.Type)
	switch {
	case ev.StateEnteredEventDetails != nil:
		x := ev.StateEnteredEventDetails
		kind := strings.TrimSuffix(typ, "StateEntered")
		if kind == "Task" {
			*task = aws.ToString(x.Name)
		}
		return localrun.Event{Type: "StateEntered", State: aws.ToString(x.Name), StateType: kind,
			Input: rawJSON(x.Input), InputBytes: len(aws.ToString(x.Input))}, true
	case ev.StateExitedEventDetails != nil:
		x := ev.StateExitedEventDetails
		out := localrun.Event{Type: "StateExited", State: aws.ToString(x.Name), StateType: strings.TrimSuffix(typ, "StateExited"),
			Output: rawJSON(x.Output), OutputBytes: len(aws.ToString(x.Output))}
		var pr localrun.Progress
		if json.Unmarshal(out.Output, &pr) == nil && pr.Counts != nil {
			out.Progress = &pr
		}
		return out, true
	case ev.TaskFailedEventDetails != nil:
		x := ev.TaskFailedEventDetails
		return localrun.Event{Type: "StateCaught", State: *task, Error: aws.ToString(x.Error), Cause: aws.ToString(x.Cause)}, true
	case ev.LambdaFunctionFailedEventDetails != nil:
		x := ev.LambdaFunctionFailedEventDetails
		return localrun.Event{Type: "StateCaught", State: *task, Error: aws.ToString(x.Error), Cause: aws.ToString(x.Cause)}, true
	case ev.MapIterationStartedEventDetails != nil:
		i := int(ev.MapIterationStartedEventDetails.Index)
		return localrun.Event{Type: "MapIterationStarted", State: aws.ToString(ev.MapIterationStartedEventDetails.Name), Index: &i}, true
	}
	switch ev.Type {
	case sfntypes.HistoryEventTypeExecutionSucceeded, sfntypes.HistoryEventTypeExecutionFailed,
		sfntypes.HistoryEventTypeExecutionAborted, sfntypes.HistoryEventTypeExecutionTimedOut:
		return localrun.Event{Type: typ}, true
	}
	return localrun.Event{}, false
}

func rawJSON(s *string) json.RawMessage {
	if s == nil || !json.Valid([]byte(*s)) {
		return nil
	}
	return json.RawMessage(*s)
}

// noteResult keeps what the summary needs: transitions, payload sizes and
// the detail states' inputs and outputs.
func noteResult(res *localrun.Result, e localrun.Event) {
	switch e.Type {
	case "StateEntered":
		res.Transitions++
		res.StatesEntered[e.State]++
		if e.InputBytes > res.MaxPayloadBytes {
			res.MaxPayloadBytes, res.MaxPayloadState = e.InputBytes, e.State
		}
		if e.State == "BatchReport" {
			res.DetailInputs[e.State] = append(res.DetailInputs[e.State], e.Input)
		}
	case "StateExited":
		if e.OutputBytes > res.MaxPayloadBytes {
			res.MaxPayloadBytes, res.MaxPayloadState = e.OutputBytes, e.State
		}
		if e.State == "Report" || e.State == "RetentionOthers" {
			res.DetailOutputs[e.State] = append(res.DetailOutputs[e.State], e.Output)
		}
	case "MapIterationStarted":
		res.MapIterations++
	}
}
