package rotation

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scripts are the policy's pre and post scripts around CreateImage: SSM
// Run Command documents run on each instance, the pre script before the
// image is taken (to quiesce the application or freeze file systems), the
// post script as soon as CreateImage has returned (to resume). A preset
// fills both.
type Scripts struct {
	// Preset: "linux-fsfreeze" (MountPoints frozen with fsfreeze) or
	// "windows-vss" (AWSEC2-ManageVssIO Freeze and Thaw). Or none, with
	// Pre and Post naming documents.
	Preset      string   `json:"preset,omitempty"`
	MountPoints []string `json:"mountPoints,omitempty"`
	Pre         *Script  `json:"pre,omitempty"`
	Post        *Script  `json:"post,omitempty"`
	// OnPreFailure: "skip" (no image of that instance this rotation) or
	// "crash-consistent" (image it anyway, tagged and reported as such).
	OnPreFailure string `json:"onPreFailure,omitempty"`
}

// Script is one SSM command document with its parameters.
type Script struct {
	Document   string              `json:"document,omitempty"`
	Parameters map[string][]string `json:"parameters,omitempty"`
	// TimeoutSeconds: how long the script may run; then it is cancelled
	// and counts as failed (the post script is still sent).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// Retries: how many more times a failed run is sent.
	Retries int `json:"retries,omitempty"`
}

// Presets and failure settings.
const (
	PresetLinuxFSFreeze = "linux-fsfreeze"
	PresetWindowsVSS    = "windows-vss"

	OnPreFailureSkip            = "skip"
	OnPreFailureCrashConsistent = "crash-consistent"

	// TagConsistency on an image made with scripts: ConsistencyApplication
	// when the pre script succeeded before CreateImage, ConsistencyCrash
	// when it did not and the policy said to go on.
	TagConsistency         = "amirotate:consistency"
	ConsistencyApplication = "application"
	ConsistencyCrash       = "crash"

	DefaultScriptTimeoutSeconds = 60
	MinScriptTimeoutSeconds     = 30 // SendCommand's smallest TimeoutSeconds
	MaxScriptTimeoutSeconds     = 3600
	MaxScriptRetries            = 3

	// Documents the presets use: AWS-owned, documented.
	DocumentRunShellScript = "AWS-RunShellScript"
	DocumentManageVssIO    = "AWSEC2-ManageVssIO"
)

var (
	mountPointRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)
	// The SSM Agent keeps its state and logs here: freezing a file system
	// that holds them stops the agent, and with it the post script.
	agentDirs = []string{"/var/lib/amazon/ssm", "/var/log/amazon/ssm"}
)

// withDefaults fills the preset's documents, parameters and the
// default timeout; nil stays nil.
func (s *Scripts) withDefaults() *Scripts {
	if s == nil {
		return nil
	}
	out := *s
	if out.OnPreFailure == "" {
		out.OnPreFailure = OnPreFailureSkip
	}
	fill := func(sc *Script) *Script {
		if sc == nil {
			sc = &Script{}
		} else {
			c := *sc
			sc = &c
		}
		if sc.TimeoutSeconds == 0 {
			sc.TimeoutSeconds = DefaultScriptTimeoutSeconds
		}
		return sc
	}
	out.Pre, out.Post = fill(out.Pre), fill(out.Post)
	return &out
}

// PreCommand and PostCommand are the document and parameters sent for the
// pre and post scripts (presets expanded; timeout in the document's
// executionTimeout where it takes one).
func (s Scripts) PreCommand() (string, map[string][]string) { return s.command(true) }
func (s Scripts) PostCommand() (string, map[string][]string) {
	return s.command(false)
}

// PreTimeout is how long the pre script's quiesce is promised: the fsfreeze
// preset's watchdog thaws then, and CreateImage must come before.
func (s Scripts) PreTimeout() time.Duration {
	if s.Pre != nil && s.Pre.TimeoutSeconds > 0 {
		return time.Duration(s.Pre.TimeoutSeconds) * time.Second
	}
	return DefaultScriptTimeoutSeconds * time.Second
}

func (s Scripts) command(pre bool) (string, map[string][]string) {
	sc := s.Post
	if pre {
		sc = s.Pre
	}
	timeout := DefaultScriptTimeoutSeconds
	if sc != nil && sc.TimeoutSeconds > 0 {
		timeout = sc.TimeoutSeconds
	}
	switch s.Preset {
	case PresetLinuxFSFreeze:
		return DocumentRunShellScript, map[string][]string{
			"commands":         fsfreezeCommands(s.MountPoints, pre, timeout),
			"executionTimeout": {strconv.Itoa(timeout)},
		}
	case PresetWindowsVSS:
		action := "Thaw"
		if pre {
			action = "Freeze"
		}
		return DocumentManageVssIO, map[string][]string{"Action": {action}}
	}
	if sc == nil {
		return "", nil
	}
	return sc.Document, sc.Parameters
}

// fsfreezeCommands: the pre script thaws what an interrupted earlier run
// may have left frozen, arms a watchdog that thaws after the timeout
// whatever becomes of the post script, marks the freeze in
// /run/amirotate/frozen (tmpfs), syncs and freezes each mount point. The
// post script thaws each one, disarms the watchdog and removes the mark.
func fsfreezeCommands(mounts []string, pre bool, timeout int) []string {
	quoted := make([]string, len(mounts))
	for i, m := range mounts {
		quoted[i] = "'" + m + "'"
	}
	list := strings.Join(quoted, " ")
	thaw := "for m in " + list + "; do fsfreeze -u \"$m\" 2>/dev/null || true; done"
	if !pre {
		return []string{
			"set -u",
			thaw,
			"pkill -f amirotate-fsfreeze-watchdog 2>/dev/null || true",
			"rm -f /run/amirotate/frozen",
			"echo thawed " + list,
		}
	}
	return []string{
		"set -eu",
		"for m in " + list + "; do mountpoint -q \"$m\" || { echo \"$m is not a mount point\" >&2; exit 2; }; done",
		thaw,
		// An earlier attempt's watchdog would thaw this freeze early.
		"pkill -f amirotate-fsfreeze-watchdog 2>/dev/null || true",
		"mkdir -p /run/amirotate",
		fmt.Sprintf("setsid nohup sh -c ': amirotate-fsfreeze-watchdog; sleep %d; %s; rm -f /run/amirotate/frozen' >/dev/null 2>&1 &", timeout, strings.ReplaceAll(thaw, "'", "")),
		"date -u +%Y-%m-%dT%H:%M:%SZ > /run/amirotate/frozen",
		"sync",
		"for m in " + list + "; do fsfreeze -f \"$m\"; done",
		"echo froze " + list,
	}
}

func (s *Scripts) validate(ps *problems, field string, noReboot bool) {
	if s == nil {
		return
	}
	if !noReboot {
		ps.add(field, "needs noReboot: true; a reboot already quiesces the instance, and a frozen file system would stall its shutdown")
	}
	switch s.OnPreFailure {
	case OnPreFailureSkip, OnPreFailureCrashConsistent:
	default:
		ps.add(field+".onPreFailure", "%q: use %q (no image of that instance this time) or %q (image it anyway, tagged %s=%s)",
			s.OnPreFailure, OnPreFailureSkip, OnPreFailureCrashConsistent, TagConsistency, ConsistencyCrash)
	}
	switch s.Preset {
	case PresetLinuxFSFreeze:
		if len(s.MountPoints) == 0 {
			ps.add(field+".mountPoints", "is empty; list the file systems to freeze, e.g. [\"/data\"]")
		}
		seen := map[string]bool{}
		for i, m := range s.MountPoints {
			f := fmt.Sprintf("%s.mountPoints[%d]", field, i)
			switch {
			case !mountPointRE.MatchString(m) || strings.Contains(m, "//") || strings.Contains(m, "/../") || strings.HasSuffix(m, "/..") || (len(m) > 1 && strings.HasSuffix(m, "/")):
				ps.add(f, "%q is not an absolute mount point path (letters, digits, '.', '_', '-', '/')", m)
			case m == "/" || slices.ContainsFunc(agentDirs, func(d string) bool { return strings.HasPrefix(d, m+"/") }):
				ps.add(f, "%q holds the SSM Agent's files (%s): freezing it stops the agent, so the post script could not thaw it", m, strings.Join(agentDirs, ", "))
			case seen[m]:
				ps.add(f, "%q is listed twice", m)
			}
			seen[m] = true
		}
	case PresetWindowsVSS:
		if len(s.MountPoints) > 0 {
			ps.add(field+".mountPoints", "is for %s; VSS freezes every volume", PresetLinuxFSFreeze)
		}
	case "":
		if len(s.MountPoints) > 0 {
			ps.add(field+".mountPoints", "needs preset %q", PresetLinuxFSFreeze)
		}
		if s.Pre == nil || s.Pre.Document == "" {
			ps.add(field+".pre.document", "is missing; name an SSM command document, or use a preset (%q, %q)", PresetLinuxFSFreeze, PresetWindowsVSS)
		}
		if s.Post == nil || s.Post.Document == "" {
			ps.add(field+".post.document", "is missing; a pre script needs a post script that undoes it (it runs whenever the pre script started)")
		}
	default:
		ps.add(field+".preset", "%q is not a preset; use %q or %q, or name documents in pre and post", s.Preset, PresetLinuxFSFreeze, PresetWindowsVSS)
	}
	for _, x := range []struct {
		name string
		sc   *Script
	}{{"pre", s.Pre}, {"post", s.Post}} {
		if x.sc == nil {
			continue
		}
		f := field + "." + x.name
		if s.Preset != "" && (x.sc.Document != "" || len(x.sc.Parameters) > 0) {
			ps.add(f, "sets a document with preset %q; use one or the other", s.Preset)
		}
		if x.sc.Document != "" && !documentNameRE.MatchString(x.sc.Document) {
			ps.add(f+".document", "%q is not an SSM document name (3-128 letters, digits, '_', '-', '.')", x.sc.Document)
		}
		if x.sc.TimeoutSeconds < MinScriptTimeoutSeconds || x.sc.TimeoutSeconds > MaxScriptTimeoutSeconds {
			ps.add(f+".timeoutSeconds", "is %d; set %d to %d", x.sc.TimeoutSeconds, MinScriptTimeoutSeconds, MaxScriptTimeoutSeconds)
		}
		if x.sc.Retries < 0 || x.sc.Retries > MaxScriptRetries {
			ps.add(f+".retries", "is %d; set 0 to %d", x.sc.Retries, MaxScriptRetries)
		}
	}
}

// Documents are the SSM documents the scripts send (for IAM).
func (s *Scripts) Documents() []string {
	if s == nil {
		return nil
	}
	pre, _ := s.PreCommand()
	post, _ := s.PostCommand()
	if pre == post {
		return []string{pre}
	}
	return []string{pre, post}
}
