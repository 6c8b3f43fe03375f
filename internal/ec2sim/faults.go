package ec2sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Fault is an injected behaviour for calls of an action in a region.
//
// A call that matches answers the error Code (with Message, HTTP status
// derived from the code unless Status is set) after Latency. With Code
// empty the call only gets the latency. With FailImage set (CreateImage or
// CopyImage), the call succeeds but the image it creates ends "failed"
// with stateReason {Code, Message} when it would have become available.
//
// Count limits how many calls the rule fires for (then it is dropped);
// Probability (0 < p ≤ 1) makes each matching call fire with that chance.
// Neither set: every matching call fires, until the rule is cleared.
type Fault struct {
	// Action, e.g. "CreateImage", "ssm:PutParameter"; "" or "*" = every action.
	Action string `json:"action"`
	// Region; "" or "*" = every region.
	Region string `json:"region"`
	// InstanceID narrows a FailImage rule to images of one instance
	// (CreateImage's InstanceId, or a copy's source image's instance).
	InstanceID  string        `json:"instanceId,omitempty"`
	Code        string        `json:"code"`
	Message     string        `json:"message,omitempty"`
	Status      int           `json:"status,omitempty"`
	Count       int           `json:"count,omitempty"`
	Probability float64       `json:"probability,omitempty"`
	Latency     time.Duration `json:"-"`
	FailImage   bool          `json:"failImage,omitempty"`
}

// UnmarshalJSON accepts latency as a Go duration string ("250ms") or a
// number of milliseconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var aux struct {
		plain
		Latency json.RawMessage `json:"latency"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*f = Fault(aux.plain)
	if len(aux.Latency) > 0 && string(aux.Latency) != "null" {
		var ms float64
		if err := json.Unmarshal(aux.Latency, &ms); err == nil {
			f.Latency = time.Duration(ms * float64(time.Millisecond))
		} else {
			var s string
			if err := json.Unmarshal(aux.Latency, &s); err != nil {
				return fmt.Errorf("latency: want a duration string or milliseconds, got %s", aux.Latency)
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("latency: %w", err)
			}
			f.Latency = d
		}
	}
	return f.validate()
}

// MarshalJSON writes latency as a duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	aux := struct {
		plain
		Latency string `json:"latency,omitempty"`
	}{plain: plain(f)}
	if f.Latency > 0 {
		aux.Latency = f.Latency.String()
	}
	return json.Marshal(aux)
}

func (f Fault) validate() error {
	switch {
	case f.Probability < 0 || f.Probability > 1:
		return fmt.Errorf("probability %v: want 0 < p ≤ 1", f.Probability)
	case f.Count < 0:
		return fmt.Errorf("count %d: want ≥ 0", f.Count)
	case f.Latency < 0:
		return fmt.Errorf("latency %v: want ≥ 0", f.Latency)
	case f.Code == "" && f.Latency == 0 && !f.FailImage:
		return fmt.Errorf("a fault needs a code, a latency or failImage")
	case f.FailImage && f.Action != "" && f.Action != "*" && f.Action != "CreateImage" && f.Action != "CopyImage":
		return fmt.Errorf("failImage applies to CreateImage or CopyImage, not %s", f.Action)
	}
	return nil
}

type faultRule struct {
	Fault
	remaining int // for Count rules
}

func (f Fault) apiError() *apiError {
	msg := f.Message
	if msg == "" {
		msg = defaultFaultMessage(f.Code)
	}
	st := f.Status
	if st == 0 {
		st = StatusForCode(f.Code)
	}
	return &apiError{Code: f.Code, Message: msg, Status: st}
}

func defaultFaultMessage(code string) string {
	switch code {
	case "RequestLimitExceeded":
		return "Request limit exceeded."
	case "InternalError":
		return "An internal error has occurred"
	case "Unavailable", "ServiceUnavailable":
		return "The service is unavailable. Please try again shortly."
	case "ThrottlingException":
		return "Rate exceeded"
	}
	return "Injected fault: " + code
}

// Inject adds a fault rule. It returns an error for an invalid rule.
func (s *Sim) Inject(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{Fault: f, remaining: f.Count})
	return nil
}

// ClearFaults drops every fault rule.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults returns the active rules (Count shows what is left).
func (s *Sim) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, r := range s.faults {
		f := r.Fault
		if f.Count > 0 {
			f.Count = r.remaining
		}
		out = append(out, f)
	}
	return out
}

// FailNextImage makes the next image created from instanceID in region
// (CreateImage, or CopyImage of such an image) end "failed" with the given
// reason instead of becoming available. instanceID "" matches any image.
func (s *Sim) FailNextImage(region, instanceID, reason string) {
	if reason == "" {
		reason = "Image creation failed"
	}
	_ = s.Inject(Fault{Action: "*", Region: region, InstanceID: instanceID, FailImage: true,
		Code: "Server.InternalError", Message: reason, Count: 1})
}

func wild(pattern, v string) bool { return pattern == "" || pattern == "*" || pattern == v }

// matchFaultLocked finds the first rule that fires for a call (not image
// failures: those are consumed by imageFailureLocked) and consumes it.
func (s *Sim) matchFaultLocked(regionName, action string) *Fault {
	for i, r := range s.faults {
		if r.FailImage || !wild(r.Region, regionName) || !wild(r.Action, action) {
			continue
		}
		if f, ok := s.fireLocked(i, r); ok {
			return f
		}
	}
	return nil
}

// imageFailureLocked reports whether an image created by action in region
// from instanceID must fail, and why.
func (s *Sim) imageFailureLocked(regionName, action, instanceID string) *stateReason {
	for i, r := range s.faults {
		if !r.FailImage || !wild(r.Region, regionName) || !wild(r.Action, action) ||
			r.InstanceID != "" && r.InstanceID != instanceID {
			continue
		}
		if f, ok := s.fireLocked(i, r); ok {
			code, msg := f.Code, f.Message
			if code == "" {
				code = "Server.InternalError"
			}
			if msg == "" {
				msg = "Image creation failed"
			}
			if !strings.Contains(code, ".") {
				code = "Server." + code
			}
			return &stateReason{Code: code, Message: msg}
		}
	}
	return nil
}

// fireLocked decides whether rule i fires now and consumes a count.
func (s *Sim) fireLocked(i int, r *faultRule) (*Fault, bool) {
	if r.Probability > 0 && s.rng.Float64() >= r.Probability {
		return nil, false
	}
	f := r.Fault
	if r.Count > 0 {
		r.remaining--
		if r.remaining <= 0 {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
	}
	return &f, true
}
