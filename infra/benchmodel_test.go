package infra

import (
	"testing"

	"github.com/amirotate/amirotate/internal/benchmodel"
)

// The benchmark bills each function at the memory the stack gives it.
func TestFunctionSpecs_MemoryAsTheBenchmarkBillsIt(t *testing.T) {
	if len(benchmodel.FunctionMemoryMB) != len(functionSpecs) {
		t.Errorf("benchmodel has %d functions, the stack %d", len(benchmodel.FunctionMemoryMB), len(functionSpecs))
	}
	for _, spec := range functionSpecs {
		if got := benchmodel.FunctionMemoryMB[spec.Name]; got != spec.MemoryMB {
			t.Errorf("%s: benchmodel bills %v MB, the stack deploys %v MB", spec.Name, got, spec.MemoryMB)
		}
	}
}
