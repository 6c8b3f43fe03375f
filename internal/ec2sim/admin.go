package ec2sim

import (
	"bytes"
	"cmp"
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
//	GET    /_sim/commands    Run Command commands sent, with each invocation's state (?region=)
//	POST   /_sim/scripts     add command scripts (CommandScript): one object or an array;
//	                         fields region, instanceId, document, outcome (succeed|fail|hang),
//	                         after ("30s" or ms), exitCode, output, count
//	DELETE /_sim/scripts     drop every command script
//	POST   /_sim/agents      {"region","instanceId","state":"Online|ConnectionLost|Unmanaged"}
//	POST   /_sim/documents   {"region", "document": Document} a custom command document
//	POST   /_sim/status-checks {"region","imageId","check":"instance|system|"} instances of the image fail that check
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
	case path == "/commands" && r.Method == http.MethodGet:
		adminJSON(w, map[string]any{"commands": s.Commands(r.URL.Query().Get("region"))})
	case path == "/scripts" && r.Method == http.MethodDelete:
		s.ClearCommandScripts()
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/scripts" && r.Method == http.MethodPost:
		var scripts []CommandScript
		if err := decodeOneOrMany(body, &scripts); err != nil {
			adminError(w, http.StatusBadRequest, "scripts: %v", err)
			return
		}
		for _, cs := range scripts {
			if err := s.ScriptCommands(cs); err != nil {
				adminError(w, http.StatusBadRequest, "scripts: %v", err)
				return
			}
		}
		adminJSON(w, map[string]any{"ok": true, "added": len(scripts)})
	case path == "/agents" && r.Method == http.MethodPost:
		var req struct{ Region, InstanceID, State string }
		if err := strictJSON(body, &req); err != nil {
			adminError(w, http.StatusBadRequest, "agents: %v", err)
			return
		}
		if err := s.SetAgent(cmp.Or(req.Region, s.regionNames[0]), req.InstanceID, req.State); err != nil {
			adminError(w, http.StatusBadRequest, "agents: %v", err)
			return
		}
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/documents" && r.Method == http.MethodPost:
		var req struct {
			Region   string
			Document Document
		}
		if err := strictJSON(body, &req); err != nil {
			adminError(w, http.StatusBadRequest, "documents: %v", err)
			return
		}
		if err := s.AddDocument(cmp.Or(req.Region, s.regionNames[0]), req.Document); err != nil {
			adminError(w, http.StatusBadRequest, "documents: %v", err)
			return
		}
		adminJSON(w, map[string]bool{"ok": true})
	case path == "/status-checks" && r.Method == http.MethodPost:
		var req struct{ Region, ImageID, Check string }
		if err := strictJSON(body, &req); err != nil {
			adminError(w, http.StatusBadRequest, "status-checks: %v", err)
			return
		}
		if err := s.ImpairImage(cmp.Or(req.Region, s.regionNames[0]), req.ImageID, req.Check); err != nil {
			adminError(w, http.StatusBadRequest, "status-checks: %v", err)
			return
		}
		adminJSON(w, map[string]bool{"ok": true})
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

func strictJSON(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// decodeOneOrMany decodes a JSON object or an array of them into *[]T.
func decodeOneOrMany[T any](body []byte, out *[]T) error {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		return strictJSON(body, out)
	}
	var one T
	if err := strictJSON(body, &one); err != nil {
		return err
	}
	*out = append(*out, one)
	return nil
}
