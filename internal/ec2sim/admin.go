package ec2sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Admin endpoints (JSON):
//
//	GET    /_sim/stats       {"calls":{"<region>":{"<Action>":n}},"throttled":n,"faulted":n}
//	DELETE /_sim/stats       zero the counters
//	POST   /_sim/reset       drop all state, faults and counters; throttling off
//	GET    /_sim/faults      the active rules
//	POST   /_sim/faults      add rules: one object, an array, or {"rules":[...]};
//	                         fields action, region, code, message, status,
//	                         probability, count, latency ("250ms" or ms), failImage, instanceId
//	DELETE /_sim/faults      drop every rule
//	GET    /_sim/throttling  {"enabled":bool}
//	POST   /_sim/throttling  {"enabled":bool}, or ?enabled=on|off, or a body "on"/"off"
//	GET    /_sim/clock       {"now":"RFC3339","manual":bool,"adjustable":bool}
//	POST   /_sim/clock       {"advance":"90s"} or {"set":"RFC3339"} (a manual or shifted clock only)
//	GET    /_sim/health      {"ok":true,"regions":[...]}
func (s *Sim) serveAdmin(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/_sim"), "/")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		adminError(w, http.StatusBadRequest, "reading body: %v", err)
		return
	}
	switch {
	case path == "/stats" && r.Method == http.MethodGet:
		adminJSON(w, s.Stats())
	case path == "/stats" && r.Method == http.MethodDelete:
		s.ResetStats()
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/reset" && r.Method == http.MethodPost:
		s.Reset()
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/faults" && r.Method == http.MethodGet:
		adminJSON(w, map[string]any{"rules": s.Faults()})
	case path == "/faults" && r.Method == http.MethodDelete:
		s.ClearFaults()
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/faults" && r.Method == http.MethodPost:
		rules, err := parseFaults(body)
		if err != nil {
			adminError(w, http.StatusBadRequest, "faults: %v", err)
			return
		}
		for _, f := range rules {
			if err := s.Inject(f); err != nil {
				adminError(w, http.StatusBadRequest, "faults: %v", err)
				return
			}
		}
		adminJSON(w, map[string]any{"ok": true, "added": len(rules)})
	case path == "/throttling" && r.Method == http.MethodGet:
		adminJSON(w, map[string]bool{"enabled": s.Throttling()})
	case path == "/throttling" && r.Method == http.MethodPost:
		on, err := parseSwitch(body, r.URL.Query().Get("enabled"))
		if err != nil {
			adminError(w, http.StatusBadRequest, "throttling: %v", err)
			return
		}
		s.SetThrottling(on)
		adminJSON(w, map[string]bool{"enabled": on})
	case path == "/clock" && r.Method == http.MethodGet:
		_, manual := s.clock.(*ManualClock)
		_, adjustable := s.clock.(AdjustableClock)
		adminJSON(w, map[string]any{"now": s.Now().Format(time.RFC3339Nano), "manual": manual, "adjustable": adjustable})
	case path == "/clock" && r.Method == http.MethodPost:
		mc, ok := s.clock.(AdjustableClock)
		if !ok {
			adminError(w, http.StatusConflict, "clock: the simulator runs on the wall clock (amirotate sim --stack runs on one that can be advanced)")
			return
		}
		var req struct {
			Advance string `json:"advance"`
			Set     string `json:"set"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			adminError(w, http.StatusBadRequest, "clock: %v", err)
			return
		}
		if req.Advance != "" {
			d, err := time.ParseDuration(req.Advance)
			if err != nil {
				adminError(w, http.StatusBadRequest, "clock: advance: %v", err)
				return
			}
			mc.Advance(d)
		}
		if req.Set != "" {
			t, err := time.Parse(time.RFC3339Nano, req.Set)
			if err != nil {
				adminError(w, http.StatusBadRequest, "clock: set: %v", err)
				return
			}
			mc.Set(t)
		}
		_, manual := s.clock.(*ManualClock)
		adminJSON(w, map[string]any{"now": s.Now().Format(time.RFC3339Nano), "manual": manual, "adjustable": true})
	case path == "/health":
		adminJSON(w, map[string]any{"ok": true, "regions": s.Regions()})
	default:
		adminError(w, http.StatusNotFound, "no admin endpoint %s %s", r.Method, r.URL.Path)
	}
}

func parseFaults(body []byte) ([]Fault, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, fmt.Errorf("empty body; want a rule, an array of rules or {\"rules\":[...]}")
	}
	dec := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}
	switch body[0] {
	case '[':
		var fs []Fault
		return fs, dec(&fs)
	case '{':
		var wrap struct {
			Rules []Fault `json:"rules"`
		}
		if err := json.Unmarshal(body, &wrap); err == nil && wrap.Rules != nil {
			return wrap.Rules, nil
		}
		var f Fault
		if err := dec(&f); err != nil {
			return nil, err
		}
		return []Fault{f}, nil
	}
	return nil, fmt.Errorf("want JSON object or array")
}

func parseSwitch(body []byte, query string) (bool, error) {
	word := strings.ToLower(strings.Trim(strings.TrimSpace(string(body)), `"`))
	if query != "" {
		word = strings.ToLower(query)
	}
	if strings.HasPrefix(word, "{") {
		var req struct {
			Enabled *bool `json:"enabled"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Enabled == nil {
			return false, fmt.Errorf(`want {"enabled":true|false}`)
		}
		return *req.Enabled, nil
	}
	switch word {
	case "on", "true", "1", "enabled":
		return true, nil
	case "off", "false", "0", "disabled":
		return false, nil
	}
	return false, fmt.Errorf(`want {"enabled":true|false}, "on" or "off"`)
}

func adminJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func adminError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}
