package statemachine

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/ec2x"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./statemachine -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output; if the change is intended, run go test ./statemachine -update and review the diff", path)
	}
}

func rendered(t *testing.T) []byte {
	t.Helper()
	def, err := Render(LocalARNs("us-east-1", "123456789012"))
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func TestRender_Golden(t *testing.T) {
	golden(t, "rotation.golden.json", rendered(t))
}

func TestMermaid_Golden(t *testing.T) {
	m, err := Mermaid(rendered(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "rotation.mmd", []byte(m))
}

func TestRender_SubstitutesEveryPlaceholder(t *testing.T) {
	want := []string{EventBusKey}
	for _, f := range ec2x.Steps {
		want = append(want, FunctionKey(f))
	}
	slices.Sort(want)
	if got := Placeholders(Template); !slices.Equal(got, want) {
		t.Fatalf("placeholders %v, want %v", got, want)
	}
	def := rendered(t)
	if bytes.Contains(def, []byte("${")) {
		t.Fatal("rendered definition still has a placeholder")
	}
	if !bytes.Contains(def, []byte(`"arn:aws:lambda:us-east-1:123456789012:function:amirotate-snapshot"`)) {
		t.Fatal("snapshot ARN not substituted")
	}
}

func TestRender_RejectsMissingUnknownAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		edit func(Substitutions)
		want string
	}{
		{"missing", func(s Substitutions) { delete(s, "PollFunctionArn") }, "no value for ${PollFunctionArn}"},
		{"unknown", func(s Substitutions) { s["PollFunctionARN"] = "x" }, `"PollFunctionARN" is not a placeholder`},
		{"empty", func(s Substitutions) { s[EventBusKey] = "" }, "empty value for ${EventBusName}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := LocalARNs("us-east-1", "123456789012")
			tt.edit(s)
			_, err := Render(s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRender_EscapesValues(t *testing.T) {
	def, err := RenderTemplate([]byte(`{"a":"${X}"}`), Substitutions{"X": `say "hi"\`})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(def, &v); err != nil || v["a"] != `say "hi"\` {
		t.Fatalf("got %s (%v)", def, err)
	}
}

func TestValidate_AcceptsTheDefinition(t *testing.T) {
	if err := Validate(rendered(t)); err != nil {
		t.Fatal(err)
	}
}

func TestValidate_FindsStructuralErrors(t *testing.T) {
	tests := []struct {
		name, def, want string
	}{
		{"not json", `{`, "state machine definition"},
		{"placeholder", `{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"${X}","End":true}}}`, "unrendered placeholders"},
		{"bad start", `{"StartAt":"B","States":{"A":{"Type":"Succeed"}}}`, `StartAt "B" is not a state`},
		{"bad next", `{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"}}}`, `A: Next "B" is not a state`},
		{"unreachable", `{"StartAt":"A","States":{"A":{"Type":"Succeed"},"B":{"Type":"Succeed"}}}`, "B: unreachable"},
		{"no next nor end", `{"StartAt":"A","States":{"A":{"Type":"Pass"}}}`, "exactly one of Next and End"},
		{"bad default", `{"StartAt":"A","States":{"A":{"Type":"Choice","Choices":[{"Variable":"$.x","BooleanEquals":true,"Next":"S"}],"Default":"Z"},"S":{"Type":"Succeed"}}}`, `Default "Z"`},
		{"bad catch", `{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"r","End":true,"Catch":[{"ErrorEquals":["States.ALL"],"Next":"Q"}]}}}`, `Catch Next "Q"`},
		{"map inner", `{"StartAt":"M","States":{"M":{"Type":"Map","End":true,"ItemProcessor":{"StartAt":"X","States":{"X":{"Type":"Pass","Next":"Y"}}}}}}`, `M/X: Next "Y"`},
		{"unknown type", `{"StartAt":"A","States":{"A":{"Type":"Jump"}}}`, `unknown Type "Jump"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.def))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// The flow rules the rest of the system relies on, checked on the structure.
func TestDefinition_RetriesAndCatches(t *testing.T) {
	m, err := Parse(rendered(t))
	if err != nil {
		t.Fatal(err)
	}
	mustRetry := []string{"RetryableError", "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}
	never := []string{"InvalidInputError", "FatalError", "States.ALL", "States.TaskFailed"}
	var check func(scope string, m *Machine)
	check = func(scope string, m *Machine) {
		for name, s := range m.States {
			if p := s.Processor(); p != nil {
				check(scope+name+"/", p)
			}
			if s.Type != "Task" || !strings.HasPrefix(s.Resource, "arn:aws:lambda:") {
				continue
			}
			var retried []string
			for _, r := range s.Retry {
				retried = append(retried, r.ErrorEquals...)
			}
			for _, e := range mustRetry {
				if !slices.Contains(retried, e) {
					t.Errorf("%s%s does not retry %s", scope, name, e)
				}
			}
			for _, e := range never {
				if slices.Contains(retried, e) {
					t.Errorf("%s%s retries %s", scope, name, e)
				}
			}
		}
	}
	check("", m)

	// Every batch Task catches everything into the batch's report; from
	// the pre scripts to the snapshot step, through the post script first:
	// it runs once the pre script started, whatever failed.
	batches := m.States["Batches"].Processor()
	viaPost := map[string]string{"PreScripts": "PostScripts", "PollPreScripts": "PostScripts", "Snapshot": "PostScripts?"}
	for name, s := range batches.States {
		if s.Type != "Task" || name == "BatchReport" {
			continue
		}
		want := cmp.Or(viaPost[name], "BatchReport")
		if len(s.Catch) != 1 || s.Catch[0].Next != want || !slices.Equal(s.Catch[0].ErrorEquals, []string{"States.ALL"}) {
			t.Errorf("Batches/%s: Catch %+v, want States.ALL → %s", name, s.Catch, want)
		}
	}
	if post := batches.States["PostScripts?"]; post.Type != "Choice" {
		t.Errorf("PostScripts? is %q, want the Choice that sends the post script", post.Type)
	}
	d := m.States["Discover"]
	if len(d.Catch) == 0 || d.Catch[0].ErrorEquals[0] != "InvalidInputError" || m.States[d.Catch[0].Next].Type != "Fail" {
		t.Errorf("Discover must send InvalidInputError to a Fail state, has %+v", d.Catch)
	}
}

// aslValidator runs the npm package asl-validator that `make setup`
// installs. Without it the test fails in CI and skips nowhere: a missing
// validator must not pass for a valid definition.
func aslValidator(t *testing.T, def []byte) (string, error) {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("local", "node_modules", ".bin", "asl-validator"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("asl-validator is not installed (%v): run `make setup` (npm ci in statemachine/local)", err)
	}
	path := filepath.Join(t.TempDir(), "def.json")
	if err := os.WriteFile(path, def, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--json-path", path).CombinedOutput()
	return string(out), err
}

func TestASLValidator_AcceptsTheDefinition(t *testing.T) {
	if out, err := aslValidator(t, rendered(t)); err != nil {
		t.Fatalf("asl-validator: %v\n%s", err, out)
	}
}

// Guards the guard: the validator really runs and rejects a broken definition.
func TestASLValidator_RejectsABrokenDefinition(t *testing.T) {
	out, err := aslValidator(t, []byte(`{"StartAt":"A","States":{"A":{"Type":"Task","Next":"Nowhere"}}}`))
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("asl-validator accepted a broken definition: %v\n%s", err, out)
	}
}
