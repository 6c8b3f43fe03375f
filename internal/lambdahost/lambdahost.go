// Package lambdahost serves Go Lambda handlers over the Lambda Invoke API,
// so that the AWS SDK for JavaScript inside the local Step Functions runner
// (or any Lambda client pointed at it with AWS_ENDPOINT_URL_LAMBDA) calls
// the same handler code AWS runs.
//
// Only what a Step Functions Task uses is served: synchronous invocation
// (RequestResponse) at POST /2015-03-31/functions/{name}/invocations, where
// {name} is a function name, a URL-encoded function ARN or a qualified ARN.
// Handler results and errors go through aws-lambda-go's own Handler, so the
// payload and the errorType a state machine sees are what Lambda reports.
package lambdahost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// maxPayload is Lambda's synchronous invocation payload limit, for the
// request and the response alike.
const maxPayload = 6 * 1024 * 1024

// ExitErrorType is what Lambda reports when the runtime process dies during
// an invocation; Fault uses it to make a function crash like that.
const ExitErrorType = "Runtime.ExitError"

// Host is an http.Handler serving a fixed set of functions.
type Host struct {
	handlers map[string]any

	mu          sync.Mutex
	invocations map[string]int
	errors      map[string]int
	faults      []*Fault
	maxRequest  int
	maxResponse int
	requestSeq  atomic.Int64
	seconds     map[string]float64
	longest     map[string]float64
	peakHeap    map[string]uint64

	// measureHeap serializes invocations and measures each one's heap (see
	// MeasureHeap); serial holds them one at a time.
	measureHeap atomic.Bool
	serial      sync.Mutex
}

// New serves handlers, keyed by function name. Each handler is anything
// lambda.NewHandler accepts, typically a step's Handle method value.
func New(handlers map[string]any) *Host {
	h := &Host{
		handlers:    make(map[string]any, len(handlers)),
		invocations: map[string]int{},
		errors:      map[string]int{},
		seconds:     map[string]float64{},
		longest:     map[string]float64{},
		peakHeap:    map[string]uint64{},
	}
	for name, fn := range handlers {
		h.handlers[name] = fn
	}
	return h
}

// Fault makes the next Count invocations of Function fail as if the runtime
// process crashed (Runtime.ExitError). With AfterHandler the handler runs
// first and its response is lost, as when the process dies after the work is
// done: the retry must then find that work and not repeat it.
//
// With ServiceError set, the Lambda service itself refuses the invocation
// instead (the function never runs): TooManyRequestsException answers 429,
// anything else 500. Clients retry those on their own first, so Count must
// outlast the client's attempts (the JavaScript SDK makes 3) to reach the
// state machine, which sees Lambda.<ServiceError>.
type Fault struct {
	Function     string
	Count        int
	AfterHandler bool
	ServiceError string
}

// Inject adds a fault.
func (h *Host) Inject(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := f
	h.faults = append(h.faults, &c)
}

// Stats is what the host observed.
type Stats struct {
	// Invocations per function name, crashed and failed ones included.
	Invocations map[string]int `json:"invocations"`
	// Errors per function name: invocations that failed (function errors,
	// crashes, injected service errors).
	Errors map[string]int `json:"errors"`
	// MaxRequestBytes and MaxResponseBytes are the largest payloads seen.
	MaxRequestBytes  int `json:"maxRequestBytes"`
	MaxResponseBytes int `json:"maxResponseBytes"`
	// Seconds per function name: the handlers' running time, summed.
	Seconds map[string]float64 `json:"seconds"`
	// LongestSeconds per function name: its longest invocation, which
	// Lambda's timeout (at most 900 s) bounds.
	LongestSeconds map[string]float64 `json:"longestSeconds"`
	// PeakHeapBytes per function name: the most any one invocation raised
	// the heap, while MeasureHeap was on (see HeapDuring).
	PeakHeapBytes map[string]uint64 `json:"peakHeapBytes,omitempty"`
}

// Stats returns a copy of the counters.
func (h *Host) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Stats{
		Invocations:      make(map[string]int, len(h.invocations)),
		Errors:           make(map[string]int, len(h.errors)),
		MaxRequestBytes:  h.maxRequest,
		MaxResponseBytes: h.maxResponse,
		Seconds:          maps.Clone(h.seconds),
		LongestSeconds:   maps.Clone(h.longest),
		PeakHeapBytes:    maps.Clone(h.peakHeap),
	}
	for k, v := range h.invocations {
		s.Invocations[k] = v
	}
	for k, v := range h.errors {
		s.Errors[k] = v
	}
	return s
}

// Functions lists the served function names, sorted.
func (h *Host) Functions() []string {
	return slices.Sorted(maps.Keys(h.handlers))
}

const invokePrefix = "/2015-03-31/functions/"

func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// EscapedPath keeps an encoded ARN's %3A intact until FunctionName decodes it.
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, invokePrefix) || !strings.HasSuffix(path, "/invocations") {
		writeServiceError(w, http.StatusNotFound, "ResourceNotFoundException", "unknown path "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeServiceError(w, http.StatusMethodNotAllowed, "InvalidRequestContentException", "invocations take POST")
		return
	}
	raw, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(path, invokePrefix), "/invocations"))
	if err != nil {
		writeServiceError(w, http.StatusBadRequest, "InvalidParameterValueException", "function name: "+err.Error())
		return
	}
	if t := r.Header.Get("X-Amz-Invocation-Type"); t != "" && t != "RequestResponse" {
		writeServiceError(w, http.StatusBadRequest, "InvalidParameterValueException", "only RequestResponse invocations are served, not "+t)
		return
	}
	name := FunctionName(raw)
	fn, ok := h.handlers[name]
	if !ok {
		writeServiceError(w, http.StatusNotFound, "ResourceNotFoundException", fmt.Sprintf("Function not found: %s (served: %s)", raw, strings.Join(h.Functions(), ", ")))
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		writeServiceError(w, http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return
	}
	if len(payload) > maxPayload {
		writeServiceError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "request payload exceeds 6 MB")
		return
	}
	fault := h.begin(name, len(payload))
	requestID := fmt.Sprintf("local-%08d", h.requestSeq.Add(1))
	if fault != nil && fault.ServiceError != "" {
		status := http.StatusInternalServerError
		if fault.ServiceError == "TooManyRequestsException" {
			status = http.StatusTooManyRequests
		}
		h.end(name, 0, true)
		writeServiceError(w, status, fault.ServiceError, serviceErrorMessage(fault.ServiceError))
		return
	}

	var body []byte
	var fnErr *messages.InvokeResponse_Error
	if fault != nil && !fault.AfterHandler {
		fnErr = exitError(requestID)
	} else {
		lc := &lambdacontext.LambdaContext{AwsRequestID: requestID, InvokedFunctionArn: raw}
		run := func() { body, fnErr = invoke(lambdacontext.NewContext(r.Context(), lc), fn, payload) }
		start := time.Now()
		if h.measureHeap.Load() {
			h.serial.Lock()
			heap := HeapDuring(run)
			h.serial.Unlock()
			h.notePeakHeap(name, heap)
		} else {
			run()
		}
		h.noteSeconds(name, time.Since(start))
		if fault != nil {
			body, fnErr = nil, exitError(requestID)
		}
	}
	w.Header().Set("X-Amz-Request-Id", requestID)
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.Header().Set("Content-Type", "application/json")
	if fnErr != nil {
		body, _ = json.Marshal(struct {
			ErrorType    string `json:"errorType"`
			ErrorMessage string `json:"errorMessage"`
		}{fnErr.Type, fnErr.Message})
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	if len(body) > maxPayload {
		body, _ = json.Marshal(map[string]string{
			"errorType":    "Function.ResponseSizeTooLarge",
			"errorMessage": fmt.Sprintf("Response payload size (%d bytes) exceeded maximum allowed payload size (%d bytes).", len(body), maxPayload),
		})
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		fnErr = &messages.InvokeResponse_Error{}
	}
	h.end(name, len(body), fnErr != nil)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// FunctionName reduces what a client sends as FunctionName (a name, a full
// or partial ARN, possibly qualified with a version or alias) to the name.
func FunctionName(s string) string {
	if i := strings.Index(s, ":function:"); i >= 0 {
		s = s[i+len(":function:"):]
	} else if strings.HasPrefix(s, "function:") {
		s = strings.TrimPrefix(s, "function:")
	} else if parts := strings.Split(s, ":"); len(parts) == 2 {
		// account-id:function-name partial ARN, or name:qualifier.
		if isAccountID(parts[0]) {
			return parts[1]
		}
		return parts[0]
	}
	if i := strings.Index(s, ":"); i >= 0 {
		s = s[:i] // version or alias qualifier
	}
	return s
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (h *Host) begin(name string, size int) *Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.invocations[name]++
	h.maxRequest = max(h.maxRequest, size)
	for _, f := range h.faults {
		if f.Function == name && f.Count > 0 {
			f.Count--
			return f
		}
	}
	return nil
}

// MeasureHeap, while on, runs one invocation at a time and records how far
// each raised the process's heap (Stats.PeakHeapBytes). Invocations that
// wait their turn are slower: switch it on for a probe, not a benchmark.
func (h *Host) MeasureHeap(on bool) { h.measureHeap.Store(on) }

func (h *Host) noteSeconds(name string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seconds[name] += d.Seconds()
	h.longest[name] = max(h.longest[name], d.Seconds())
}

func (h *Host) notePeakHeap(name string, n uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peakHeap[name] = max(h.peakHeap[name], n)
}

func (h *Host) end(name string, size int, failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.maxResponse = max(h.maxResponse, size)
	if failed {
		h.errors[name]++
	}
}

// invoke runs one invocation the way aws-lambda-go's runtime loop does: a
// returned error becomes {errorType: its type name}, a panic becomes the
// panic value's type name (Lambda then restarts the runtime; here nothing
// needs restarting). A fresh Handler per call: aws-lambda-go returns bytes of
// a pooled buffer that a concurrent call on the same Handler may reuse.
func invoke(ctx context.Context, fn any, payload []byte) (body []byte, fnErr *messages.InvokeResponse_Error) {
	defer func() {
		if v := recover(); v != nil {
			body, fnErr = nil, &messages.InvokeResponse_Error{Type: typeName(v), Message: fmt.Sprint(v)}
		}
	}()
	out, err := lambda.NewHandler(fn).Invoke(ctx, payload)
	if err != nil {
		if ive, ok := err.(messages.InvokeResponse_Error); ok {
			return nil, &ive
		}
		return nil, &messages.InvokeResponse_Error{Type: typeName(err), Message: err.Error()}
	}
	return append([]byte(nil), out...), nil
}

// typeName is aws-lambda-go's errorType: the dynamic type's name, through one pointer.
func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		return t.Elem().Name()
	}
	return t.Name()
}

func exitError(requestID string) *messages.InvokeResponse_Error {
	return &messages.InvokeResponse_Error{
		Type:    ExitErrorType,
		Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: exit status 2", requestID),
	}
}

// writeServiceError answers like the Lambda service itself (not the
// function): the SDK raises these as exceptions named by the error type.
func writeServiceError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
}

func serviceErrorMessage(code string) string {
	if code == "TooManyRequestsException" {
		return "Rate Exceeded."
	}
	return "An internal error occurred: " + code
}
