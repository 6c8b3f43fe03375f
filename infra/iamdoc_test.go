package infra

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/iam.md from the synthesized template")

// TestIAM_DocumentedTable keeps testdata/iam.md (the README's "IAM each
// function gets" table) equal to what the template grants. Regenerate with
// `go test ./infra -run TestIAM_DocumentedTable -update`.
func TestIAM_DocumentedTable(t *testing.T) {
	synth(t)
	got := iamTable(t)
	const path = "testdata/iam.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is stale; run go test ./infra -run TestIAM_DocumentedTable -update\n--- got:\n%s", path, got)
	}
}

// proofsFile: for each statement of the local template, the request of the
// local world's scenario that is denied without it (internal/iamsim's
// TestEnforcement_EveryStatementAndConditionIsNeeded writes it).
const proofsFile = "../internal/iamsim/testdata/proofs.md"

// kmsProof: the local world makes no encrypted copies; the KMS statements
// are proven by the extra-authorization test instead.
const kmsProof = "`TestExtraAuthorizations_GrantedAllowsRemovedDenies` (encrypted CopyImage)"

// proofs reads proofsFile: function and statement id → the denied request.
func proofs(t *testing.T) map[string]string {
	data, err := os.ReadFile(proofsFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) == 4 && cells[2] == "removed" {
			out[strings.TrimPrefix(cells[0], "| ")+"/"+cells[1]] = strings.TrimSuffix(cells[3], " |")
		}
	}
	return out
}

// iamTable renders the API statements of every function's role in the Full
// stack (the testdata deployment: two policies, copies with KMS keys), each
// with the request that proves it needed: the local world's scenario is
// denied it once the statement is removed.
func iamTable(t *testing.T) string {
	byStep := functionsByStep(t, synthed.fullJSON)
	proved := proofs(t)
	var b strings.Builder
	b.WriteString("| function | actions | resources | conditions | without it, the scenario is denied |\n|---|---|---|---|---|\n")
	for _, spec := range functionSpecs {
		var rows []string
		for _, st := range roleStatements(synthed.fullJSON, functionRole(synthed.fullJSON, byStep[spec.Name])) {
			if platformOnly(st) {
				continue
			}
			var res []string
			for _, r := range st.Resources {
				res = append(res, "`"+shortARN(resourceString(r))+"`")
			}
			proof := proved[spec.Name+"/"+st.Sid]
			if strings.HasPrefix(st.Actions[0], "kms:") {
				proof = kmsProof
			}
			if proof == "" {
				t.Errorf("%s: statement %s is proven by no scenario (%s)", spec.Name, st.Sid, proofsFile)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", spec.Name,
				"`"+strings.Join(st.Actions, "`, `")+"`", strings.Join(res, ", "), conditionText(st.Condition), proof))
		}
		if len(rows) == 0 {
			rows = append(rows, fmt.Sprintf("| %s | none (no AWS calls) | | | |", spec.Name))
		}
		b.WriteString(strings.Join(rows, "\n") + "\n")
	}
	b.WriteString("\nEvery function also writes its own log group (`logs:CreateLogStream`, `logs:PutLogEvents`) and X-Ray traces " +
		"(`xray:PutTraceSegments`, `xray:PutTelemetryRecords`). `aws:RequestedRegion` is the stack's region and the copy regions.\n")
	return b.String()
}

func platformOnly(st statement) bool {
	for _, a := range st.Actions {
		if !strings.HasPrefix(a, "logs:") && !strings.HasPrefix(a, "xray:") {
			return false
		}
	}
	return true
}

func shortARN(s string) string {
	s = strings.ReplaceAll(s, "<AWS::Partition>", "aws")
	return strings.ReplaceAll(s, testAccount, "<account>")
}

// conditionText renders a condition block compactly, leaving out the
// region limit every statement has.
func conditionText(c map[string]any) string {
	var parts []string
	for _, op := range sortedKeys(c) {
		kv := c[op].(map[string]any)
		for _, k := range sortedKeys(kv) {
			if k == "aws:RequestedRegion" {
				continue
			}
			v := kv[k]
			var vals []string
			for _, x := range asList(v) {
				vals = append(vals, shortARN(fmt.Sprint(x)))
			}
			sort.Strings(vals)
			parts = append(parts, fmt.Sprintf("%s `%s` = `%s`", op, k, strings.Join(vals, "`, `")))
		}
	}
	if len(parts) == 0 {
		return "region only"
	}
	return strings.Join(parts, "; ")
}
