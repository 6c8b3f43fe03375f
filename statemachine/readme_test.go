package statemachine

import (
	"os"
	"strings"
	"testing"
)

// The README shows the state machine as the Mermaid picture generated from
// the definition; this keeps the picture from drifting from testdata.
func TestREADME_ShowsTheGeneratedPicture(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	picture, err := os.ReadFile("testdata/rotation.mmd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), strings.TrimSpace(string(picture))) {
		t.Fatal("README.md does not contain statemachine/testdata/rotation.mmd: paste the current picture into its mermaid block")
	}
}
