package boot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/ec2x"
)

func TestFailing_AnswersFatalErrorWithTheCause(t *testing.T) {
	h := failing[struct{}, int](errors.New("no region"))
	out, err := h(context.Background(), struct{}{})
	fe, ok := err.(ec2x.FatalError)
	if !ok || out != 0 || !strings.Contains(fe.Message, "no region") {
		t.Fatalf("got %v, %#v; want an unwrapped ec2x.FatalError naming the cause", out, err)
	}
}
