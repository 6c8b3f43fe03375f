package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/ec2limits"
	"github.com/amirotate/amirotate/internal/ec2sim"
	"github.com/amirotate/amirotate/internal/steps"
)

// auditLine is one line of the audit log.
type auditLine struct {
	Msg      string   `json:"msg"`
	Action   string   `json:"action"`
	IDs      []string `json:"ids"`
	Region   string   `json:"region"`
	Policy   string   `json:"policy"`
	Rotation string   `json:"rotation"`
	Reason   string   `json:"reason"`
	Result   string   `json:"result"`
}

// Every mutating call any step makes writes its audit line. The calls are
// not listed here: the simulator counts what the steps called (sent once,
// retries aside) and every one of them must have its line, and no line may
// stand for a call EC2 did not get. Three rotations with sharing,
// deprecation, publishing, a failed image (poll's cleanup), retention and
// an image already gone (its snapshots deleted one by one) make the steps
// call every kind of change they make.
func TestAudit_EveryMutatingCallWritesItsLine(t *testing.T) {
	w := newRunWorld(t)
	raw, err := os.ReadFile(w.policy)
	if err != nil {
		t.Fatal(err)
	}
	// The last rotation shares and deprecates: a policy that shares retires
	// its expired images over days (usage reports) instead of deleting them,
	// so the deletions come from the rotations before it.
	shared := strings.Replace(string(raw), `"retention": {"keep": 1},`,
		`"retention": {"keep": 1}, "shareWith": ["111122223333"], "deprecateAfterDays": 30,`, 1)
	failing := w.fleet.InstanceIDs("web")[0]
	if err := w.sim.Inject(ec2sim.Fault{Action: "CreateImage", InstanceID: failing, FailImage: true, Code: "Client.InternalError", Message: "disk read error", Count: 1}); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(w.dir, "audit.jsonl")
	w.sim.ResetStats()
	w.run("--rotation-time", day(3).Format("2006-01-02T15:04:05Z07:00"), "--audit", log) // fails: one image failed
	// An image EC2 says is gone already: retention then deletes its
	// snapshots one by one (DeleteSnapshot).
	if err := w.sim.Inject(ec2sim.Fault{Action: "DeregisterImage", Code: "InvalidAMIID.NotFound", Count: 1}); err != nil {
		t.Fatal(err)
	}
	w.run("--rotation-time", day(2).Format("2006-01-02T15:04:05Z07:00"), "--audit", log)
	if err := os.WriteFile(w.policy, []byte(shared), 0o644); err != nil {
		t.Fatal(err)
	}
	w.rotateOK(day(1), "--audit", log)

	actions := auditMatchesCalls(t, w, log)
	t.Logf("region and action: calls = audit lines\n%s", strings.Join(actions, "\n"))
	for _, want := range []string{"CreateImage", "CopyImage", "CreateTags", "DeleteTags", "EnableImageDeprecation", "ModifyImageAttribute",
		"ModifySnapshotAttribute", "ssm:PutParameter", "CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeregisterImage", "DeleteSnapshot"} {
		found := false
		for _, k := range actions {
			found = found || strings.HasSuffix(k, " "+want)
		}
		if !found {
			t.Errorf("the scenario made no %s call: it no longer exercises every change", want)
		}
	}
}

// auditMatchesCalls checks that the audit log at path has one complete line
// per mutating call the simulator counted since its stats were reset, and
// returns the regions and actions seen.
func auditMatchesCalls(t *testing.T, w *runWorld, path string) []string {
	t.Helper()
	st := w.sim.Stats().FirstAttempts()
	called := map[string]int{}
	for region, calls := range st.Calls {
		for action, n := range calls {
			_, bare, found := strings.Cut(action, ":")
			if !found {
				bare = action
			}
			if !ec2limits.IsNonMutating(bare) {
				called[region+" "+action] += n
			}
		}
	}
	logged := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if l.Msg != steps.AuditMessage || l.Action == "" || len(l.IDs) == 0 || l.Region == "" || l.Policy != "web" ||
			l.Rotation == "" || l.Reason == "" || l.Result == "" {
			t.Errorf("incomplete audit line %s", sc.Text())
		}
		logged[l.Region+" "+l.Action]++
	}
	keys := map[string]bool{}
	for k := range called {
		keys[k] = true
	}
	for k := range logged {
		keys[k] = true
	}
	var actions []string
	for k := range keys {
		actions = append(actions, k)
		if called[k] != logged[k] {
			t.Errorf("%s: EC2 got %d calls, the audit log has %d lines", k, called[k], logged[k])
		}
	}
	sort.Strings(actions)
	return actions
}
