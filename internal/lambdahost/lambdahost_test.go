package lambdahost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

type RetryableError struct{ Msg string }

func (e RetryableError) Error() string { return e.Msg }

type echoIn struct {
	N    int    `json:"n"`
	Fail string `json:"fail"`
}

type echoOut struct {
	N int `json:"n"`
}

func echo(ctx context.Context, in echoIn) (echoOut, error) {
	switch in.Fail {
	case "retryable":
		return echoOut{}, RetryableError{Msg: "throttled"}
	case "wrapped":
		return echoOut{}, fmt.Errorf("context: %w", RetryableError{Msg: "throttled"})
	case "panic":
		panic("boom")
	case "nil-map":
		var m map[string]int
		m["x"] = 1
	}
	return echoOut{N: in.N + 1}, nil
}

type response struct {
	status  int
	fnError string
	body    map[string]any
}

func post(t *testing.T, base, name, payload string) response {
	t.Helper()
	res, err := http.Post(base+"/2015-03-31/functions/"+url.PathEscape(name)+"/invocations", "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("response %q: %v", raw, err)
	}
	return response{status: res.StatusCode, fnError: res.Header.Get("X-Amz-Function-Error"), body: body}
}

func newServer(t *testing.T) (*Host, *httptest.Server) {
	t.Helper()
	h := New(map[string]any{"amirotate-echo": echo})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func TestHost_InvokesByNameOrARN(t *testing.T) {
	_, srv := newServer(t)
	for _, name := range []string{
		"amirotate-echo",
		"arn:aws:lambda:us-east-1:123456789012:function:amirotate-echo",
		"arn:aws:lambda:us-east-1:123456789012:function:amirotate-echo:$LATEST",
		"123456789012:amirotate-echo",
		"amirotate-echo:live",
	} {
		t.Run(name, func(t *testing.T) {
			r := post(t, srv.URL, name, `{"n":41}`)
			if r.status != 200 || r.fnError != "" || r.body["n"] != float64(42) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestHost_FunctionErrorsAsLambdaReportsThem(t *testing.T) {
	_, srv := newServer(t)
	tests := []struct {
		fail, errorType, message string
	}{
		{"retryable", "RetryableError", "throttled"},
		// A wrapped error keeps its wrapper's name: the reason handlers return values unwrapped.
		{"wrapped", "wrapError", "context: throttled"},
		{"panic", "string", "boom"},
		{"nil-map", "plainError", "assignment to entry in nil map"},
	}
	for _, tt := range tests {
		t.Run(tt.fail, func(t *testing.T) {
			r := post(t, srv.URL, "amirotate-echo", `{"fail":"`+tt.fail+`"}`)
			if r.status != 200 || r.fnError != "Unhandled" {
				t.Fatalf("status %d, X-Amz-Function-Error %q", r.status, r.fnError)
			}
			if r.body["errorType"] != tt.errorType || r.body["errorMessage"] != tt.message {
				t.Fatalf("body %v, want errorType %q message %q", r.body, tt.errorType, tt.message)
			}
		})
	}
}

func TestHost_UnknownFunctionIsServiceError(t *testing.T) {
	_, srv := newServer(t)
	r := post(t, srv.URL, "arn:aws:lambda:us-east-1:123456789012:function:nope", `{}`)
	if r.status != 404 || r.fnError != "" {
		t.Fatalf("got %+v", r)
	}
}

func TestHost_FaultCrashesOnceThenServes(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("afterHandler=%v", after), func(t *testing.T) {
			h, srv := newServer(t)
			h.Inject(Fault{Function: "amirotate-echo", Count: 1, AfterHandler: after})
			r := post(t, srv.URL, "amirotate-echo", `{"n":1}`)
			if r.fnError != "Unhandled" || r.body["errorType"] != ExitErrorType {
				t.Fatalf("first call: %+v", r)
			}
			r = post(t, srv.URL, "amirotate-echo", `{"n":1}`)
			if r.fnError != "" || r.body["n"] != float64(2) {
				t.Fatalf("second call: %+v", r)
			}
			s := h.Stats()
			if s.Invocations["amirotate-echo"] != 2 || s.Errors["amirotate-echo"] != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestHost_CountsConcurrentInvocationsAndPayloadSizes(t *testing.T) {
	h, srv := newServer(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := post(t, srv.URL, "amirotate-echo", fmt.Sprintf(`{"n":%d}`, i))
			if r.body["n"] != float64(i+1) {
				t.Errorf("call %d got %v", i, r.body)
			}
		}()
	}
	wg.Wait()
	s := h.Stats()
	if s.Invocations["amirotate-echo"] != 20 {
		t.Fatalf("invocations %v", s.Invocations)
	}
	if s.MaxRequestBytes != len(`{"n":19}`) || s.MaxResponseBytes == 0 {
		t.Fatalf("sizes %+v", s)
	}
}

func TestFunctionName(t *testing.T) {
	tests := map[string]string{
		"amirotate-poll": "amirotate-poll",
		"arn:aws:lambda:eu-west-1:123456789012:function:amirotate-poll":       "amirotate-poll",
		"arn:aws:lambda:eu-west-1:123456789012:function:amirotate-poll:prod":  "amirotate-poll",
		"arn:aws-cn:lambda:cn-north-1:123456789012:function:amirotate-poll:7": "amirotate-poll",
		"123456789012:amirotate-poll":                                         "amirotate-poll",
		"amirotate-poll:prod":                                                 "amirotate-poll",
		"function:amirotate-poll":                                             "amirotate-poll",
	}
	for in, want := range tests {
		if got := FunctionName(in); got != want {
			t.Errorf("FunctionName(%q) = %q, want %q", in, got, want)
		}
	}
}
