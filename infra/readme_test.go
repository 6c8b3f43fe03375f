package infra

import (
	"os"
	"strings"
	"testing"
)

// The README's table of what each function may do is testdata/iam.md,
// generated from the synthesized template; this keeps the README current.
func TestREADME_ShowsTheGeneratedIAMTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile("testdata/iam.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), strings.TrimSpace(string(table))) {
		t.Fatal("README.md does not contain infra/testdata/iam.md: paste the current table into the deploy section")
	}
}
