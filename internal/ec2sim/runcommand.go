package ec2sim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SSM Run Command and managed nodes: SendCommand, GetCommandInvocation,
// ListCommandInvocations, ListCommands, CancelCommand and
// DescribeInstanceInformation, with the shapes, statuses and error codes of
// the Systems Manager API reference
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html
// and the pages of the other actions) and the statuses of "Understanding
// command statuses"
// (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html).
//
// An invocation's life, evaluated lazily against the clock like images:
//
//   - SendCommand registers one invocation per instance; until
//     Options.InvocationDelay has passed, GetCommandInvocation answers
//     InvocationDoesNotExist and ListCommandInvocations leaves it out (the
//     eventual consistency every Run Command client meets; the SDK's
//     CommandExecuted waiter retries on it).
//   - When it registers, an Online agent starts it (InProgress). An agent
//     that is offline (ConnectionLost, or the instance is not running)
//     leaves it Delayed until the agent comes back or the delivery timeout
//     (SendCommand's TimeoutSeconds, default 3600) passes: TimedOut with
//     StatusDetails DeliveryTimedOut. An instance terminated before
//     delivery makes it Failed/Undeliverable.
//   - Once started, the script scripted for the instance and document (see
//     CommandScript; default: success after Options.CommandDelay) ends it
//     Success or Failed with its exit code; a script that hangs, or runs
//     longer than the document's executionTimeout parameter (default
//     3600 s), ends TimedOut with StatusDetails ExecutionTimedOut.
//   - CancelCommand cancels what has not ended: Cancelled.
//
// An instance is a managed node when its SSM Agent registered: instances
// seeded with RunInstance are; instances launched through RunInstances are
// when they have an instance profile (the agent needs one to register:
// https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-instance-permissions.html;
// Default Host Management Configuration is not modelled). SetAgent changes
// it. SendCommand to an instance that is not a managed node, or that is
// shutting down or terminated, answers InvalidInstanceId.

// Agent states of SetAgent.
const (
	// AgentOnline: the agent is registered and pings (PingStatus Online
	// while the instance runs).
	AgentOnline = "Online"
	// AgentOffline: registered, but the agent stopped pinging
	// (PingStatus ConnectionLost); commands wait for delivery.
	AgentOffline = "ConnectionLost"
	// AgentUnmanaged: no agent registered; the instance is not a managed
	// node.
	AgentUnmanaged = "Unmanaged"
)

// Script outcomes of CommandScript.
const (
	ScriptSucceed = "succeed"
	ScriptFail    = "fail"
	ScriptHang    = "hang"
)

// CommandScript says how commands run on instances: the next Count
// commands (0 = every one) of Document ("" = any) on InstanceID ("" = any)
// in Region ("" = any) run for After on the simulator's clock and then
// succeed, or fail with ExitCode (default 1), or hang until their execution
// timeout. Output is their standard output (failures: standard error). The
// newest matching script wins.
type CommandScript struct {
	Region     string        `json:"region,omitempty"`
	InstanceID string        `json:"instanceId,omitempty"`
	Document   string        `json:"document,omitempty"`
	Outcome    string        `json:"outcome"`
	After      time.Duration `json:"-"`
	ExitCode   int           `json:"exitCode,omitempty"`
	Output     string        `json:"output,omitempty"`
	Count      int           `json:"count,omitempty"`
}

// UnmarshalJSON accepts after as a Go duration string ("30s") or
// milliseconds, and rejects unknown fields.
func (cs *CommandScript) UnmarshalJSON(b []byte) error {
	type plain CommandScript
	var aux struct {
		plain
		After json.RawMessage `json:"after"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&aux); err != nil {
		return err
	}
	*cs = CommandScript(aux.plain)
	if len(aux.After) > 0 && string(aux.After) != "null" {
		var ms float64
		if err := json.Unmarshal(aux.After, &ms); err == nil {
			cs.After = time.Duration(ms * float64(time.Millisecond))
		} else {
			var str string
			if err := json.Unmarshal(aux.After, &str); err != nil {
				return fmt.Errorf("after: want a duration string or milliseconds, got %s", aux.After)
			}
			d, err := time.ParseDuration(str)
			if err != nil {
				return fmt.Errorf("after: %w", err)
			}
			cs.After = d
		}
	}
	return cs.validate()
}

func (cs CommandScript) validate() error {
	switch cs.Outcome {
	case ScriptSucceed, ScriptFail, ScriptHang:
	default:
		return fmt.Errorf("ec2sim: command script outcome %q: want %q, %q or %q", cs.Outcome, ScriptSucceed, ScriptFail, ScriptHang)
	}
	if cs.After < 0 || cs.Count < 0 {
		return fmt.Errorf("ec2sim: command script: after and count must not be negative")
	}
	if cs.InstanceID != "" && !reInstanceID.MatchString(cs.InstanceID) {
		return fmt.Errorf("ec2sim: command script: %q is not an instance id", cs.InstanceID)
	}
	return nil
}

// Document is an SSM command document the simulator knows. The Amazon
// documents AWS-RunShellScript and AWS-RunPowerShellScript exist in every
// region; AddDocument adds custom ones.
type Document struct {
	Name string `json:"name"`
	// Platforms: of "Linux", "Windows", "MacOS". Default Linux.
	Platforms []string `json:"platforms,omitempty"`
	// Parameters the document declares.
	Parameters []DocumentParameter `json:"parameters,omitempty"`
	// Plugin is the name of the document's one step (the PluginName of
	// GetCommandInvocation); default "run".
	Plugin string `json:"plugin,omitempty"`
	owner  string
}

// DocumentParameter is one declared parameter. A parameter without a
// Default is required. AllowedPattern, when set, must match each value.
type DocumentParameter struct {
	Name           string `json:"name"`
	Default        string `json:"default,omitempty"`
	HasDefault     bool   `json:"hasDefault,omitempty"`
	AllowedPattern string `json:"allowedPattern,omitempty"`
}

// executionTimeoutPattern is the allowedPattern of the Amazon run-script
// documents' executionTimeout parameter (1 to 172800 seconds).
const executionTimeoutPattern = `([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)`

// amazonDocuments are the Amazon-owned documents of every region, with the
// parameters their content declares.
func amazonDocuments() map[string]*Document {
	runScript := func(name, plugin string, platforms ...string) *Document {
		return &Document{Name: name, Platforms: platforms, Plugin: plugin, owner: "Amazon", Parameters: []DocumentParameter{
			{Name: "commands"},
			{Name: "workingDirectory", HasDefault: true},
			{Name: "executionTimeout", Default: "3600", HasDefault: true, AllowedPattern: executionTimeoutPattern},
		}}
	}
	return map[string]*Document{
		// Pauses (Freeze) or resumes (Thaw) I/O through VSS; VSS allows at
		// most ten seconds between the two
		// (https://docs.aws.amazon.com/AWSEC2/latest/WindowsGuide/application-consistent-snapshots.html).
		"AWSEC2-ManageVssIO": {Name: "AWSEC2-ManageVssIO", Platforms: []string{"Windows"}, Plugin: "manageVssIO", owner: "Amazon",
			Parameters: []DocumentParameter{{Name: "Action", AllowedPattern: "Freeze|Thaw"}}},
		"AWS-RunShellScript":      runScript("AWS-RunShellScript", "aws:runShellScript", "Linux", "MacOS"),
		"AWS-RunPowerShellScript": runScript("AWS-RunPowerShellScript", "aws:runPowerShellScript", "Windows", "Linux", "MacOS"),
	}
}

func (d *Document) param(name string) (DocumentParameter, bool) {
	for _, p := range d.Parameters {
		if p.Name == name {
			return p, true
		}
	}
	return DocumentParameter{}, false
}

func (d *Document) runsOn(platform string) bool {
	return slices.Contains(d.Platforms, platform)
}

// command is one SendCommand.
type command struct {
	seq            uint64
	id             string
	document       *Document
	params         map[string][]string
	comment        string
	instanceIDs    []string
	requested      time.Time
	timeoutSeconds int
	cancelled      bool
	invocations    []*invocation
}

// invocation is a command on one instance.
type invocation struct {
	cmd          *command
	instanceID   string
	registerAt   time.Time // visible from then on
	deliverBy    time.Time // delivery timeout
	execTimeout  time.Duration
	script       CommandScript
	status       string
	details      string
	responseCode int
	started      time.Time
	ended        time.Time
	stdout       string
	stderr       string
}

func (inv *invocation) terminal() bool {
	switch inv.status {
	case "Success", "Failed", "TimedOut", "Cancelled":
		return true
	}
	return false
}

func (inv *invocation) end(at time.Time, status, details string, code int) {
	inv.ended, inv.status, inv.details, inv.responseCode = at, status, details, code
}

// agent is the SSM Agent of an instance.
type agent struct {
	state      string    // AgentOnline, AgentOffline or AgentUnmanaged
	since      time.Time // when state began
	registered time.Time // first registration
}

// agentOf returns the instance's agent state.
func (r *region) agentOf(in *instance) agent {
	if in.agent.state == "" {
		return agent{state: AgentUnmanaged}
	}
	return in.agent
}

// reachable: the agent can take a command at now (Online, instance running).
func reachable(in *instance, now time.Time) (bool, time.Time) {
	in.refresh(now)
	if in.agent.state != AgentOnline || in.state != "running" {
		return false, time.Time{}
	}
	return true, maxTime(in.agent.since, in.runningSince)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// refresh applies the due transitions of an invocation at now.
func (r *region) refreshInvocation(inv *invocation, now time.Time) {
	if inv.terminal() || now.Before(inv.registerAt) {
		return
	}
	if inv.started.IsZero() {
		in := r.instances[inv.instanceID]
		if in != nil {
			in.refresh(now)
		}
		if in == nil || in.state == "terminated" || in.state == "shutting-down" {
			at := inv.registerAt
			if in != nil && in.terminatedAt.After(at) {
				at = in.terminatedAt
			}
			inv.end(at, "Failed", "Undeliverable", -1)
			return
		}
		ok, since := reachable(in, now)
		start := maxTime(inv.registerAt, since)
		switch {
		case ok && start.Before(inv.deliverBy):
			inv.started, inv.status, inv.details = start, "InProgress", "InProgress"
		case !now.Before(inv.deliverBy):
			inv.end(inv.deliverBy, "TimedOut", "DeliveryTimedOut", -1)
			return
		default:
			inv.status, inv.details = "Delayed", "Delayed"
			return
		}
	}
	limit := inv.started.Add(inv.execTimeout)
	done := inv.started.Add(inv.script.After)
	if inv.script.Outcome == ScriptHang || done.After(limit) {
		if !now.Before(limit) {
			// The agent kills the script (SIGKILL: 137).
			inv.end(limit, "TimedOut", "ExecutionTimedOut", 137)
		}
		return
	}
	if now.Before(done) {
		return
	}
	if inv.script.Outcome == ScriptFail {
		inv.stderr = inv.script.Output
		inv.end(done, "Failed", "Failed", cmp.Or(inv.script.ExitCode, 1))
		return
	}
	inv.stdout = inv.script.Output
	inv.end(done, "Success", "Success", 0)
}

// refreshAgentLocked brings the invocations on an instance up to now
// before its agent or instance state changes, so that lazy evaluation
// sees each state for the time it lasted.
func (r *region) refreshInstanceInvocations(id string, now time.Time) {
	for _, c := range r.commands {
		for _, inv := range c.invocations {
			if inv.instanceID == id {
				r.refreshInvocation(inv, now)
			}
		}
	}
}

// commandStatus aggregates the invocations as ListCommands reports them
// (MaxErrors 0: one error fails the command).
func (r *region) commandStatus(c *command, now time.Time) (status, details string, completed, errs, deliveryTimedOut int) {
	started := false
	for _, inv := range c.invocations {
		r.refreshInvocation(inv, now)
		if !inv.started.IsZero() {
			started = true
		}
		if !inv.terminal() {
			continue
		}
		completed++
		switch inv.details {
		case "Failed", "ExecutionTimedOut", "Undeliverable":
			errs++
		case "DeliveryTimedOut":
			deliveryTimedOut++
		}
	}
	switch {
	case completed < len(c.invocations) && c.cancelled:
		return "Cancelling", "Cancelling", completed, errs, deliveryTimedOut
	case completed < len(c.invocations) && !started:
		return "Pending", "Pending", completed, errs, deliveryTimedOut
	case completed < len(c.invocations):
		return "InProgress", "InProgress", completed, errs, deliveryTimedOut
	case c.cancelled:
		return "Cancelled", "Cancelled", completed, errs, deliveryTimedOut
	case errs > 0:
		return "Failed", "Failed", completed, errs, deliveryTimedOut
	case deliveryTimedOut == len(c.invocations):
		return "TimedOut", "DeliveryTimedOut", completed, errs, deliveryTimedOut
	case deliveryTimedOut > 0:
		return "Success", "Incomplete", completed, errs, deliveryTimedOut
	}
	return "Success", "Success", completed, errs, deliveryTimedOut
}

var reCommandID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (s *Sim) newCommandID() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a), uint16(a>>32), uint16(a>>48)&0xfff, uint16(b)&0x3fff|0x8000, b>>16&0xffffffffffff)
}

// scriptFor picks the newest matching script, consuming one of its count.
func (s *Sim) scriptForLocked(regionName, instanceID, document string) CommandScript {
	for i := len(s.scripts) - 1; i >= 0; i-- {
		cs := s.scripts[i]
		if cs.Region != "" && cs.Region != regionName || cs.InstanceID != "" && cs.InstanceID != instanceID || cs.Document != "" && cs.Document != document {
			continue
		}
		if cs.Count > 0 {
			if cs.Count == 1 {
				s.scripts = slices.Delete(s.scripts, i, i+1)
			} else {
				s.scripts[i].Count--
			}
		}
		return cs
	}
	return CommandScript{Outcome: ScriptSucceed, After: s.opts.CommandDelay}
}

func (s *Sim) ssmSendCommand(r *region, body []byte, now time.Time) (any, *apiError) {
	var in struct {
		DocumentName           string
		DocumentVersion        string
		DocumentHash           string
		InstanceIds            []string
		Targets                []struct{ Key string }
		Parameters             map[string][]string
		TimeoutSeconds         *int
		Comment                string
		OutputS3BucketName     string
		OutputS3KeyPrefix      string
		MaxConcurrency         string
		MaxErrors              string
		ServiceRoleArn         string
		CloudWatchOutputConfig map[string]any
		NotificationConfig     map[string]any
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if in.DocumentName == "" {
		return nil, ssmValidation("1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null")
	}
	if len(in.Targets) > 0 {
		// Targets (tag and resource-group targeting) are not modelled.
		return nil, ssmValidation("ec2sim: SendCommand with Targets is not modelled; name the instances in InstanceIds")
	}
	if len(in.InstanceIds) == 0 {
		return nil, ssmValidation("Either InstanceIds or Targets must be specified.")
	}
	if len(in.InstanceIds) > 50 {
		return nil, ssmValidation("1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	timeout := 3600
	if in.TimeoutSeconds != nil {
		timeout = *in.TimeoutSeconds
		if timeout < 30 || timeout > 2592000 {
			return nil, ssmValidation("1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", timeout)
		}
	}
	if len(in.Comment) > 100 {
		return nil, ssmValidation("1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100")
	}
	name := in.DocumentName
	if i := strings.LastIndex(name, ":document/"); strings.HasPrefix(name, "arn:") && i > 0 {
		name = name[i+len(":document/"):]
	}
	doc, ok := r.documents[name]
	if !ok {
		return nil, errorf("InvalidDocument", "Document with name %s does not exist.", in.DocumentName)
	}
	if v := in.DocumentVersion; v != "" && v != "1" && v != "$LATEST" && v != "$DEFAULT" {
		return nil, errorf("InvalidDocumentVersion", "Document %s does not have version %s.", name, v)
	}
	// Parameters: only declared ones, every required one, each value allowed.
	params := map[string][]string{}
	for k, v := range in.Parameters {
		p, ok := doc.param(k)
		if !ok {
			return nil, errorf("InvalidParameters", "Parameter \"%s\" is not defined in the document %s.", k, name)
		}
		if p.AllowedPattern != "" {
			re := regexp.MustCompile(`^(` + p.AllowedPattern + `)$`)
			for _, val := range v {
				if !re.MatchString(val) {
					return nil, errorf("InvalidParameters", "Parameter \"%s\" \"%s\" fails to match required pattern: %s", k, val, p.AllowedPattern)
				}
			}
		}
		params[k] = slices.Clone(v)
	}
	for _, p := range doc.Parameters {
		if _, ok := params[p.Name]; ok {
			continue
		}
		if !p.HasDefault && p.Default == "" {
			return nil, errorf("InvalidParameters", "Parameter \"%s\" is required by the document %s and was not supplied.", p.Name, name)
		}
	}
	execTimeout := time.Hour
	if v, ok := params["executionTimeout"]; ok && len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil {
			execTimeout = time.Duration(n) * time.Second
		}
	} else if p, ok := doc.param("executionTimeout"); ok && p.Default != "" {
		if n, err := strconv.Atoi(p.Default); err == nil {
			execTimeout = time.Duration(n) * time.Second
		}
	}
	// Instances: each a managed node that is not shutting down or terminated.
	seen := map[string]bool{}
	var targets []*instance
	for _, id := range in.InstanceIds {
		if seen[id] {
			return nil, errorf("DuplicateInstanceId", "Instance %s is specified more than once.", id)
		}
		seen[id] = true
		inst, ok := r.instances[id]
		if ok {
			inst.refresh(now)
		}
		if !reInstanceID.MatchString(id) || !ok || inst.gone(now) || inst.agent.state == "" || inst.agent.state == AgentUnmanaged ||
			inst.state == "shutting-down" || inst.state == "terminated" {
			return nil, errorf("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", id, AccountID)
		}
		targets = append(targets, inst)
	}
	supported := false
	for _, inst := range targets {
		if doc.runsOn(inst.platformType()) {
			supported = true
		}
	}
	if !supported {
		return nil, errorf("UnsupportedPlatformType", "The document %s doesn't support the platform type of the given managed node ID(s).", name)
	}
	c := &command{seq: s.nextSeq(), id: s.newCommandID(), document: doc, params: params, comment: in.Comment,
		instanceIDs: slices.Clone(in.InstanceIds), requested: now, timeoutSeconds: timeout}
	for _, inst := range targets {
		inv := &invocation{cmd: c, instanceID: inst.id, registerAt: now.Add(s.opts.InvocationDelay),
			deliverBy: now.Add(time.Duration(timeout) * time.Second), execTimeout: execTimeout,
			status: "Pending", details: "Pending", responseCode: -1}
		if !doc.runsOn(inst.platformType()) {
			// A target of another platform fails on the node.
			inv.script = CommandScript{Outcome: ScriptFail, ExitCode: 1, Output: fmt.Sprintf("Invalid platform type: document %s does not support %s", name, inst.platformType())}
		} else {
			inv.script = s.scriptForLocked(r.name, inst.id, name)
		}
		c.invocations = append(c.invocations, inv)
	}
	r.commands = append(r.commands, c)
	r.commandIDs[c.id] = c
	// SendCommand answers the command as accepted: Pending, nothing run yet.
	out := r.commandOut(c, now)
	out["Status"], out["StatusDetails"], out["CompletedCount"], out["ErrorCount"], out["DeliveryTimedOutCount"] = "Pending", "Pending", 0, 0, 0
	return map[string]any{"Command": out}, nil
}

func (r *region) commandOut(c *command, now time.Time) map[string]any {
	status, details, completed, errs, dto := r.commandStatus(c, now)
	out := map[string]any{
		"CommandId": c.id, "DocumentName": c.document.Name, "DocumentVersion": "$DEFAULT", "Comment": c.comment,
		"ExpiresAfter": epochSeconds(c.requested.Add(time.Duration(c.timeoutSeconds)*time.Second + c.invocationsExecTimeout())),
		"Parameters":   c.params, "InstanceIds": c.instanceIDs, "Targets": []any{},
		"RequestedDateTime": epochSeconds(c.requested), "Status": status, "StatusDetails": details,
		"OutputS3Region": r.name, "OutputS3BucketName": "", "OutputS3KeyPrefix": "",
		"MaxConcurrency": "50", "MaxErrors": "0", "TargetCount": len(c.invocations), "CompletedCount": completed,
		"ErrorCount": errs, "DeliveryTimedOutCount": dto, "ServiceRole": "",
		"NotificationConfig":     map[string]any{"NotificationArn": "", "NotificationEvents": []string{}, "NotificationType": ""},
		"CloudWatchOutputConfig": map[string]any{"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
		"TimeoutSeconds":         c.timeoutSeconds,
	}
	return out
}

func (c *command) invocationsExecTimeout() time.Duration {
	if len(c.invocations) == 0 {
		return 0
	}
	return c.invocations[0].execTimeout
}

func (r *region) commandByID(id string) (*command, *apiError) {
	if !reCommandID.MatchString(id) {
		return nil, errorf("InvalidCommandId", "The command ID %s is not valid.", id)
	}
	if c, ok := r.commandIDs[id]; ok {
		return c, nil
	}
	return nil, errorf("InvalidCommandId", "The command ID %s is not valid.", id)
}

// execTime is how GetCommandInvocation writes its execution times.
func execTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// isoDuration writes d as ExecutionElapsedTime does (PT1.5S, PT1H0.271S).
func isoDuration(d time.Duration) string {
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	sec := float64(d%time.Minute) / float64(time.Second)
	out := "PT"
	if h > 0 {
		out += strconv.Itoa(h) + "H"
	}
	if m > 0 {
		out += strconv.Itoa(m) + "M"
	}
	return out + strconv.FormatFloat(sec, 'f', -1, 64) + "S"
}

func (s *Sim) ssmGetCommandInvocation(r *region, body []byte, now time.Time) (any, *apiError) {
	var in struct{ CommandId, InstanceId, PluginName string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if in.CommandId == "" || in.InstanceId == "" {
		return nil, ssmValidation("1 validation error detected: CommandId and InstanceId must not be null")
	}
	c, err := r.commandByID(in.CommandId)
	if err != nil {
		return nil, err
	}
	if !reInstanceID.MatchString(in.InstanceId) {
		return nil, errorf("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", in.InstanceId, AccountID)
	}
	var inv *invocation
	for _, x := range c.invocations {
		if x.instanceID == in.InstanceId && !now.Before(x.registerAt) {
			inv = x
		}
	}
	if inv == nil {
		return nil, errorf("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist) when calling the GetCommandInvocation operation")
	}
	if in.PluginName != "" && in.PluginName != c.document.plugin() {
		return nil, errorf("InvalidPluginName", "The plugin name %s is not valid.", in.PluginName)
	}
	r.refreshInvocation(inv, now)
	elapsed := ""
	if !inv.started.IsZero() {
		end := inv.ended
		if end.IsZero() {
			end = now
		}
		elapsed = isoDuration(end.Sub(inv.started))
	}
	return map[string]any{
		"CommandId": c.id, "InstanceId": inv.instanceID, "Comment": c.comment, "DocumentName": c.document.Name,
		"DocumentVersion": "$DEFAULT", "PluginName": c.document.plugin(), "ResponseCode": inv.responseCode,
		"ExecutionStartDateTime": execTime(inv.started), "ExecutionElapsedTime": elapsed,
		"ExecutionEndDateTime": execTime(inv.ended), "Status": inv.status, "StatusDetails": inv.details,
		"StandardOutputContent": inv.stdout, "StandardOutputUrl": "", "StandardErrorContent": inv.stderr, "StandardErrorUrl": "",
		"CloudWatchOutputConfig": map[string]any{"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
	}, nil
}

func (d *Document) plugin() string { return cmp.Or(d.Plugin, "run") }

type ssmListIn struct {
	CommandId  string
	InstanceId string
	MaxResults int
	NextToken  string
	Details    bool
	Filters    []struct{ Key, Value string }
}

// commandFilter checks ListCommands/ListCommandInvocations filters.
func commandFilter(fs []struct{ Key, Value string }) (func(c *command, status string) bool, *apiError) {
	var checks []func(c *command, status string) bool
	for _, f := range fs {
		v := f.Value
		switch f.Key {
		case "InvokedAfter", "InvokedBefore":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				if t, err = time.Parse("2006-01-02", v); err != nil {
					return nil, errorf("InvalidFilterKey", "The filter value %s of %s is not a valid date.", v, f.Key)
				}
			}
			after := f.Key == "InvokedAfter"
			checks = append(checks, func(c *command, _ string) bool {
				if after {
					return !c.requested.Before(t)
				}
				return !c.requested.After(t)
			})
		case "Status":
			checks = append(checks, func(_ *command, status string) bool { return status == v })
		case "DocumentName":
			checks = append(checks, func(c *command, _ string) bool { return c.document.Name == v })
		case "ExecutionStage":
			checks = append(checks, func(_ *command, status string) bool {
				running := status == "Pending" || status == "InProgress" || status == "Delayed" || status == "Cancelling"
				return v == "Executing" && running || v == "Complete" && !running
			})
		default:
			return nil, errorf("InvalidFilterKey", "The specified filter key %s is not valid.", f.Key)
		}
	}
	return func(c *command, status string) bool {
		for _, ok := range checks {
			if !ok(c, status) {
				return false
			}
		}
		return true
	}, nil
}

func ssmPageLimit(n, max int) (int, *apiError) {
	if n == 0 {
		return max, nil
	}
	if n < 1 || n > max {
		return 0, ssmValidation("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to %d", n, max)
	}
	return n, nil
}

// commandListQuery decodes and checks what ListCommands and
// ListCommandInvocations share: page size, filters, command and instance.
func (r *region) commandListQuery(body []byte) (in ssmListIn, limit int, match func(c *command, status string) bool, err *apiError) {
	if err = decodeSSM(body, &in); err != nil {
		return in, 0, nil, err
	}
	if limit, err = ssmPageLimit(in.MaxResults, 50); err != nil {
		return in, 0, nil, err
	}
	if match, err = commandFilter(in.Filters); err != nil {
		return in, 0, nil, err
	}
	if in.CommandId != "" {
		if _, err = r.commandByID(in.CommandId); err != nil {
			return in, 0, nil, err
		}
	}
	if in.InstanceId != "" && !reInstanceID.MatchString(in.InstanceId) {
		return in, 0, nil, errorf("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", in.InstanceId, AccountID)
	}
	return in, limit, match, nil
}

func (s *Sim) ssmListCommands(r *region, body []byte, now time.Time) (any, *apiError) {
	in, limit, match, err := r.commandListQuery(body)
	if err != nil {
		return nil, err
	}
	// Newest first, as Run Command lists them.
	cmds := slices.Clone(r.commands)
	slices.Reverse(cmds)
	page, next, perr := paginateList(cmds, func(c *command) bool {
		if in.CommandId != "" && c.id != in.CommandId || in.InstanceId != "" && !slices.Contains(c.instanceIDs, in.InstanceId) {
			return false
		}
		status, _, _, _, _ := r.commandStatus(c, now)
		return match(c, status)
	}, "commands", in.NextToken, limit)
	if perr != nil {
		return nil, errorf("InvalidNextToken", "The specified token isn't valid.")
	}
	out := make([]map[string]any, len(page))
	for i, c := range page {
		out[i] = r.commandOut(c, now)
	}
	res := map[string]any{"Commands": out}
	if next != "" {
		res["NextToken"] = next
	}
	return res, nil
}

func (s *Sim) ssmListCommandInvocations(r *region, body []byte, now time.Time) (any, *apiError) {
	in, limit, match, err := r.commandListQuery(body)
	if err != nil {
		return nil, err
	}
	var invs []*invocation
	for i := len(r.commands) - 1; i >= 0; i-- {
		c := r.commands[i]
		if in.CommandId != "" && c.id != in.CommandId {
			continue
		}
		for _, inv := range c.invocations {
			if in.InstanceId == "" || inv.instanceID == in.InstanceId {
				invs = append(invs, inv)
			}
		}
	}
	page, next, perr := paginateList(invs, func(inv *invocation) bool {
		if now.Before(inv.registerAt) {
			return false
		}
		r.refreshInvocation(inv, now)
		return match(inv.cmd, inv.status)
	}, "invocations", in.NextToken, limit)
	if perr != nil {
		return nil, errorf("InvalidNextToken", "The specified token isn't valid.")
	}
	out := make([]map[string]any, len(page))
	for i, inv := range page {
		c := inv.cmd
		o := map[string]any{
			"CommandId": c.id, "InstanceId": inv.instanceID, "InstanceName": "", "Comment": c.comment,
			"DocumentName": c.document.Name, "DocumentVersion": "$DEFAULT", "RequestedDateTime": epochSeconds(c.requested),
			"Status": inv.status, "StatusDetails": inv.details, "TraceOutput": "", "StandardOutputUrl": "", "StandardErrorUrl": "",
			"CommandPlugins": []any{}, "ServiceRole": "",
			"NotificationConfig":     map[string]any{"NotificationArn": "", "NotificationEvents": []string{}, "NotificationType": ""},
			"CloudWatchOutputConfig": map[string]any{"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": false},
		}
		if in.Details {
			plugin := map[string]any{"Name": c.document.plugin(), "Status": inv.status, "StatusDetails": inv.details,
				"ResponseCode": inv.responseCode, "Output": inv.stdout + inv.stderr, "StandardOutputUrl": "", "StandardErrorUrl": "",
				"OutputS3Region": r.name, "OutputS3BucketName": "", "OutputS3KeyPrefix": ""}
			if !inv.started.IsZero() {
				plugin["ResponseStartDateTime"] = epochSeconds(inv.started)
			}
			if !inv.ended.IsZero() {
				plugin["ResponseFinishDateTime"] = epochSeconds(inv.ended)
			}
			o["CommandPlugins"] = []any{plugin}
		}
		out[i] = o
	}
	res := map[string]any{"CommandInvocations": out}
	if next != "" {
		res["NextToken"] = next
	}
	return res, nil
}

func (s *Sim) ssmCancelCommand(r *region, body []byte, now time.Time) (any, *apiError) {
	var in struct {
		CommandId   string
		InstanceIds []string
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	c, err := r.commandByID(in.CommandId)
	if err != nil {
		return nil, err
	}
	for _, id := range in.InstanceIds {
		if !slices.Contains(c.instanceIDs, id) {
			return nil, errorf("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", id, AccountID)
		}
	}
	for _, inv := range c.invocations {
		if len(in.InstanceIds) > 0 && !slices.Contains(in.InstanceIds, inv.instanceID) {
			continue
		}
		r.refreshInvocation(inv, now)
		if !inv.terminal() {
			inv.end(now, "Cancelled", "Cancelled", -1)
		}
	}
	if len(in.InstanceIds) == 0 {
		c.cancelled = true
	}
	return map[string]any{}, nil
}

// instanceInformation is one managed node as DescribeInstanceInformation
// reports it.
func (r *region) instanceInformation(in *instance, now time.Time) map[string]any {
	in.refresh(now)
	ping := "ConnectionLost"
	last := in.agent.since
	if ok, _ := reachable(in, now); ok {
		ping, last = "Online", now
	}
	platform := in.platformType()
	name, version := "Amazon Linux", "2023"
	if platform == "Windows" {
		name, version = "Microsoft Windows Server 2022 Datacenter", "10.0.20348"
	}
	return map[string]any{
		"InstanceId": in.id, "PingStatus": ping, "LastPingDateTime": epochSeconds(last), "AgentVersion": "3.3.1142.0",
		"IsLatestVersion": true, "PlatformType": platform, "PlatformName": name, "PlatformVersion": version,
		"ResourceType": "EC2Instance", "IPAddress": in.privateIP, "ComputerName": "ip-" + strings.ReplaceAll(in.privateIP, ".", "-") + ".ec2.internal",
		"IamRole":          strings.TrimPrefix(in.profileArn[strings.LastIndexByte(in.profileArn, '/')+1:], "/"),
		"RegistrationDate": epochSeconds(in.agent.registered), "SourceId": in.id, "SourceType": "AWS::EC2::Instance",
		"AssociationStatus": "Success",
	}
}

func (s *Sim) ssmDescribeInstanceInformation(r *region, body []byte, now time.Time) (any, *apiError) {
	var in struct {
		InstanceInformationFilterList []struct {
			Key      string `json:"key"`
			ValueSet []string
		}
		Filters []struct {
			Key    string
			Values []string
		}
		MaxResults int
		NextToken  string
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	limit := in.MaxResults
	if limit == 0 {
		limit = 10
	}
	if limit < 5 || limit > 50 {
		return nil, ssmValidation("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 5 and 50", in.MaxResults)
	}
	if len(in.InstanceInformationFilterList) > 0 && len(in.Filters) > 0 {
		return nil, errorf("InvalidFilter", "InstanceInformationFilterList and Filters cannot be used together.")
	}
	type filter struct {
		key    string
		values []string
	}
	var fs []filter
	for _, f := range in.InstanceInformationFilterList {
		fs = append(fs, filter{f.Key, f.ValueSet})
	}
	for _, f := range in.Filters {
		fs = append(fs, filter{f.Key, f.Values})
	}
	for _, f := range fs {
		switch {
		case f.key == "InstanceIds", f.key == "PingStatus", f.key == "PlatformTypes", f.key == "ResourceType",
			f.key == "AgentVersion", f.key == "IamRole", f.key == "AssociationStatus", strings.HasPrefix(f.key, "tag:"), f.key == "tag-key":
		default:
			return nil, errorf("InvalidInstanceInformationFilterValue", "The filter key %s is not valid.", f.key)
		}
		if len(f.values) == 0 {
			return nil, errorf("InvalidInstanceInformationFilterValue", "The filter %s has no values.", f.key)
		}
	}
	var infos []map[string]any
	for _, inst := range r.instanceList {
		inst.refresh(now)
		if inst.gone(now) || inst.state == "terminated" || inst.agent.state == "" || inst.agent.state == AgentUnmanaged {
			continue
		}
		info := r.instanceInformation(inst, now)
		ok := true
		for _, f := range fs {
			var have []string
			switch {
			case f.key == "InstanceIds":
				have = []string{inst.id}
			case f.key == "PingStatus":
				have = []string{info["PingStatus"].(string)}
			case f.key == "PlatformTypes":
				have = []string{info["PlatformType"].(string)}
			case f.key == "ResourceType":
				have = []string{"EC2Instance"}
			case f.key == "AgentVersion":
				have = []string{info["AgentVersion"].(string)}
			case f.key == "IamRole":
				have = []string{info["IamRole"].(string)}
			case f.key == "AssociationStatus":
				have = []string{"Success"}
			case f.key == "tag-key":
				for k := range inst.tags {
					have = append(have, k)
				}
			default:
				if v, ok := inst.tags[strings.TrimPrefix(f.key, "tag:")]; ok {
					have = []string{v}
				}
			}
			hit := false
			for _, v := range f.values {
				if slices.Contains(have, v) {
					hit = true
				}
			}
			if !hit {
				ok = false
				break
			}
		}
		if ok {
			infos = append(infos, info)
		}
	}
	rows := make([]int, len(infos))
	for i := range rows {
		rows[i] = i
	}
	page, next, perr := paginateList(rows, func(int) bool { return true }, "instance-information", in.NextToken, limit)
	if perr != nil {
		return nil, errorf("InvalidNextToken", "The specified token isn't valid.")
	}
	out := make([]map[string]any, len(page))
	for i, k := range page {
		out[i] = infos[k]
	}
	res := map[string]any{"InstanceInformationList": out}
	if next != "" {
		res["NextToken"] = next
	}
	return res, nil
}

// platformType is the instance's SSM platform type.
func (in *instance) platformType() string {
	if in.platform == "windows" {
		return "Windows"
	}
	return "Linux"
}

// SetAgent sets the SSM Agent state of an instance (AgentOnline,
// AgentOffline or AgentUnmanaged).
func (s *Sim) SetAgent(regionName, instanceID, state string) error {
	if err := checkAgentState(state); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, aerr := s.region(regionName)
	if aerr != nil {
		return aerr
	}
	in, ok := r.instances[instanceID]
	if !ok {
		return fmt.Errorf("ec2sim: no instance %s in %s", instanceID, regionName)
	}
	now := s.Now()
	r.refreshInstanceInvocations(instanceID, now)
	in.setAgent(state, now)
	return nil
}

func checkAgentState(state string) error {
	switch state {
	case AgentOnline, AgentOffline, AgentUnmanaged:
		return nil
	}
	return fmt.Errorf("ec2sim: agent state %q: want %q, %q or %q", state, AgentOnline, AgentOffline, AgentUnmanaged)
}

func (in *instance) setAgent(state string, now time.Time) {
	if in.agent.state == state {
		return
	}
	in.agent.state, in.agent.since = state, now
	if state != AgentUnmanaged && in.agent.registered.IsZero() {
		in.agent.registered = now
	}
}

// ScriptCommands adds a command script (see CommandScript).
func (s *Sim) ScriptCommands(cs CommandScript) error {
	if err := cs.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = append(s.scripts, cs)
	return nil
}

// ClearCommandScripts drops every command script: commands succeed after
// Options.CommandDelay again.
func (s *Sim) ClearCommandScripts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = nil
}

// AddDocument adds (or replaces) a custom command document in a region.
func (s *Sim) AddDocument(regionName string, d Document) error {
	if !regexp.MustCompile(`^[a-zA-Z0-9_\-.]{3,128}$`).MatchString(d.Name) {
		return fmt.Errorf("ec2sim: document name %q: 3 to 128 letters, digits, '_', '-' or '.'", d.Name)
	}
	for _, prefix := range []string{"aws-", "amazon", "amzn"} {
		if strings.HasPrefix(strings.ToLower(d.Name), prefix) {
			return fmt.Errorf("ec2sim: document name %q: names beginning with %q are reserved", d.Name, prefix)
		}
	}
	if len(d.Platforms) == 0 {
		d.Platforms = []string{"Linux"}
	}
	for i, p := range d.Parameters {
		if p.Default != "" {
			d.Parameters[i].HasDefault = true
		}
		if p.AllowedPattern != "" {
			if _, err := regexp.Compile(p.AllowedPattern); err != nil {
				return fmt.Errorf("ec2sim: document %s parameter %s: allowedPattern: %v", d.Name, p.Name, err)
			}
		}
	}
	d.owner = AccountID
	s.mu.Lock()
	defer s.mu.Unlock()
	r, aerr := s.region(regionName)
	if aerr != nil {
		return aerr
	}
	r.documents[d.Name] = &d
	return nil
}

// documentARN: Amazon-owned documents carry no account.
func documentARN(r *region, name string) string {
	if d, ok := r.documents[name]; ok && d.owner == "Amazon" {
		return "arn:aws:ssm:" + r.name + "::document/" + name
	}
	return ownedARN("ssm", r.name, "document/"+name)
}

// CommandRecord is a command as it ran, for tests and /_sim/commands.
type CommandRecord struct {
	CommandID   string              `json:"commandId"`
	Region      string              `json:"region"`
	Document    string              `json:"document"`
	Parameters  map[string][]string `json:"parameters"`
	Requested   time.Time           `json:"requested"`
	Invocations []InvocationRecord  `json:"invocations"`
}

// InvocationRecord is a command on one instance.
type InvocationRecord struct {
	InstanceID    string    `json:"instanceId"`
	Status        string    `json:"status"`
	StatusDetails string    `json:"statusDetails"`
	ResponseCode  int       `json:"responseCode"`
	Started       time.Time `json:"started,omitzero"`
	Ended         time.Time `json:"ended,omitzero"`
}

// Commands returns the commands sent in a region ("" = every region), in
// the order they were sent, with each invocation's state at the clock's
// current time.
func (s *Sim) Commands(regionName string) []CommandRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	var out []CommandRecord
	for _, name := range s.regionNames {
		r := s.regions[name]
		if regionName != "" && name != regionName {
			continue
		}
		for _, c := range r.commands {
			rec := CommandRecord{CommandID: c.id, Region: name, Document: c.document.Name, Parameters: c.params, Requested: c.requested}
			for _, inv := range c.invocations {
				r.refreshInvocation(inv, now)
				rec.Invocations = append(rec.Invocations, InvocationRecord{InstanceID: inv.instanceID, Status: inv.status,
					StatusDetails: inv.details, ResponseCode: inv.responseCode, Started: inv.started, Ended: inv.ended})
			}
			out = append(out, rec)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Requested.Before(out[j].Requested) })
	return out
}
