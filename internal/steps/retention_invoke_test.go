package steps

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Invoke must route by shape: a wrong route would prune a batch's scope as
// if it were the pass over other instances, or the reverse.
func TestRetention_InvokeRoutesByInputShape(t *testing.T) {
	r := &Retention{}
	tests := []struct {
		name, input, wantField string
	}{
		// Both inputs lack rotation.time, so each handler stops at its input
		// check; the error tells which handler ran.
		{"batch", `{"policy":{"name":"web"},"instanceIds":["i-00000001"]}`, "rotation.time"},
		{"others pass", `{"policy":{"name":"web"},"exclude":[]}`, "rotation.time"},
		{"not JSON", `[`, ""},
		{"others with a wrong type", `{"exclude":"i-00000001"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := r.Invoke(context.Background(), json.RawMessage(tt.input))
			var inv rotation.InvalidInputError
			if !errors.As(err, &inv) {
				t.Fatalf("got %v, %v; want an InvalidInputError", out, err)
			}
			if tt.wantField != "" && inv.Problems[0].Field != tt.wantField {
				t.Errorf("field = %q, want %q", inv.Problems[0].Field, tt.wantField)
			}
			switch tt.name {
			case "batch":
				if _, ok := out.(Batch); !ok {
					t.Errorf("batch input answered %T, want Batch", out)
				}
			case "others pass":
				if _, ok := out.(RetentionOthersOut); !ok {
					t.Errorf("others input answered %T, want RetentionOthersOut", out)
				}
			}
		})
	}
}
