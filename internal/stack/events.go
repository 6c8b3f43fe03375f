package stack

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
)

var placeholder = regexp.MustCompile(`<([A-Za-z0-9_.\-]+)>`)

// transform applies a rule target's input transformer to an event
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html):
// each <name> of the template becomes the value its InputPathsMap path
// selects, or a predefined variable (<aws.events.event>, ...). A string
// inside quotes is inserted escaped, without its own quotes; anything else
// as JSON. Without a template the event itself is the input.
func transform(rule Rule, event []byte) (string, error) {
	if rule.InputTemplate == "" {
		return string(event), nil
	}
	var ev map[string]any
	if err := json.Unmarshal(event, &ev); err != nil {
		return "", err
	}
	values := map[string]any{
		"aws.events.rule-arn":             rule.ARN,
		"aws.events.rule-name":            rule.Name,
		"aws.events.event.ingestion-time": ev["time"],
		"aws.events.event":                json.RawMessage(event),
		"aws.events.event.json":           json.RawMessage(event),
	}
	for name, path := range rule.InputPaths {
		values[name] = jsonPath(ev, path)
	}
	var err error
	t := rule.InputTemplate
	out := placeholder.ReplaceAllStringFunc(t, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := values[name]
		if !ok {
			err = fmt.Errorf("%s is neither in InputPathsMap nor predefined", m)
			return m
		}
		quoted := strings.Contains(t, `"`+m+`"`)
		if s, isStr := v.(string); isStr && quoted {
			b, _ := json.Marshal(s)
			return string(b[1 : len(b)-1])
		}
		b, _ := json.Marshal(v)
		return string(b)
	})
	if err != nil {
		return "", err
	}
	if !json.Valid([]byte(out)) {
		return "", fmt.Errorf("the transformed input is not JSON: %.200s", out)
	}
	return out, nil
}

// jsonPath selects $.a.b.c (the paths InputPathsMap holds); nil when absent.
func jsonPath(v any, path string) any {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	if path == "" {
		return v
	}
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// CloudFormation's DescribeStacks and GetTemplate (Query protocol, XML) for
// the stack: what operators use to find its state machine and policies
// (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html).
func (s *Stack) serveCloudFormation(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeCFNError(w, "ValidationError", err.Error())
		return
	}
	name := r.Form.Get("StackName")
	stackID := fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/00000000-0000-0000-0000-000000000000", s.tmpl.Region, s.tmpl.Account, s.tmpl.StackName)
	if name != "" && name != s.tmpl.StackName && name != stackID {
		writeCFNError(w, "ValidationError", fmt.Sprintf("Stack with id %s does not exist", name))
		return
	}
	type output struct {
		OutputKey   string
		OutputValue string
	}
	type stack struct {
		StackName    string
		StackId      string
		StackStatus  string
		CreationTime string
		Outputs      []output `xml:"Outputs>member"`
	}
	action := r.Form.Get("Action")
	w.Header().Set("Content-Type", "text/xml")
	switch action {
	case "DescribeStacks":
		st := stack{StackName: s.tmpl.StackName, StackId: stackID, StackStatus: "CREATE_COMPLETE",
			CreationTime: s.started.UTC().Format(time.RFC3339)}
		keys := make([]string, 0, len(s.tmpl.Outputs))
		for k := range s.tmpl.Outputs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			st.Outputs = append(st.Outputs, output{k, s.tmpl.Outputs[k]})
		}
		writeXML(w, struct {
			XMLName xml.Name `xml:"DescribeStacksResponse"`
			Xmlns   string   `xml:"xmlns,attr"`
			Stacks  []stack  `xml:"DescribeStacksResult>Stacks>member"`
			ReqID   string   `xml:"ResponseMetadata>RequestId"`
		}{Xmlns: cfnNS, Stacks: []stack{st}, ReqID: s.newName()})
	case "GetTemplate":
		writeXML(w, struct {
			XMLName xml.Name `xml:"GetTemplateResponse"`
			Xmlns   string   `xml:"xmlns,attr"`
			Body    string   `xml:"GetTemplateResult>TemplateBody"`
			Stages  []string `xml:"GetTemplateResult>StagesAvailable>member"`
			ReqID   string   `xml:"ResponseMetadata>RequestId"`
		}{Xmlns: cfnNS, Body: string(s.tmpl.Raw), Stages: []string{"Original", "Processed"}, ReqID: s.newName()})
	default:
		writeCFNError(w, "InvalidAction", fmt.Sprintf("the local stack answers DescribeStacks and GetTemplate, not %q", action))
	}
}

const cfnNS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"

func writeXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

func writeCFNError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusBadRequest)
	b, _ := xml.Marshal(struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Xmlns   string   `xml:"xmlns,attr"`
		Type    string   `xml:"Error>Type"`
		Code    string   `xml:"Error>Code"`
		Message string   `xml:"Error>Message"`
	}{Xmlns: cfnNS, Type: "Sender", Code: code, Message: msg})
	_, _ = w.Write(b)
}
