package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

func TestRoute_DispatchesOnInputShape(t *testing.T) {
	var got string
	h := route(
		func(_ context.Context, b steps.Batch) (steps.Batch, error) {
			got = "batch " + b.InstanceIDs[0]
			return b, nil
		},
		func(_ context.Context, in steps.RetentionOthersIn) (steps.RetentionOthersOut, error) {
			got = "others " + in.Exclude[0]
			return steps.RetentionOthersOut{}, nil
		},
	)
	for _, tc := range []struct{ input, want string }{
		// What the Batches map's Retention state passes: the batch.
		{`{"policy":{"name":"p"},"rotation":{"id":"20261125T0300Z"},"instanceIds":["i-0123456789abcdef0"],"images":[],"pending":0,"toCopy":0,"waitSeconds":0,"polls":1}`, "batch i-0123456789abcdef0"},
		// What RetentionOthers passes: policy, rotation, exclude.
		{`{"policy":{"name":"p"},"rotation":{"id":"20261125T0300Z"},"exclude":["i-0123456789abcdef1"]}`, "others i-0123456789abcdef1"},
	} {
		got = ""
		if _, err := h(context.Background(), json.RawMessage(tc.input)); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("input %s went to %q, want %q", tc.input, got, tc.want)
		}
	}
}

func TestRoute_BadInputIsInvalidInputError(t *testing.T) {
	h := route(nil, nil)
	_, err := h(context.Background(), json.RawMessage(`{"exclude":"i-1"}`))
	// Unwrapped, so Lambda reports errorType InvalidInputError.
	if _, ok := err.(rotation.InvalidInputError); !ok {
		t.Fatalf("error %#v, want a rotation.InvalidInputError value", err)
	}
}
