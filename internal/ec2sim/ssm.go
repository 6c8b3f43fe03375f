package ec2sim

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SSM Parameter Store over the JSON 1.1 protocol (X-Amz-Target
// AmazonSSM.<Action>): PutParameter, GetParameter, GetParameters,
// GetParametersByPath, DeleteParameter, DeleteParameters (Run Command is in
// runcommand.go). Parameters live per
// region. A value with DataType aws:ec2:image must look like an AMI id;
// whether the image exists is checked after the call succeeded, as SSM does
// (see ssmPutParameter).

type parameter struct {
	name        string
	value       string
	typ         string
	dataType    string
	description string
	version     int64
	modified    time.Time
	history     map[int64]paramVersion
}

type paramVersion struct {
	value    string
	modified time.Time
}

var (
	reParamName = regexp.MustCompile(`^[a-zA-Z0-9_.\-/]+$`)
)

type ssmHandler func(s *Sim, r *region, body []byte, now time.Time) (any, *apiError)

var ssmActions = map[string]ssmHandler{
	"PutParameter":        nil, // served with the caller's validation rights (serveSSM)
	"GetParameter":        (*Sim).ssmGetParameter,
	"GetParameters":       (*Sim).ssmGetParameters,
	"GetParametersByPath": (*Sim).ssmGetParametersByPath,
	"DeleteParameter":     (*Sim).ssmDeleteParameter,
	"DeleteParameters":    (*Sim).ssmDeleteParameters,

	"SendCommand":                 (*Sim).ssmSendCommand,
	"GetCommandInvocation":        (*Sim).ssmGetCommandInvocation,
	"ListCommandInvocations":      (*Sim).ssmListCommandInvocations,
	"ListCommands":                (*Sim).ssmListCommands,
	"CancelCommand":               (*Sim).ssmCancelCommand,
	"DescribeInstanceInformation": (*Sim).ssmDescribeInstanceInformation,
}

func (s *Sim) serveSSM(w http.ResponseWriter, r *http.Request, regionName string) {
	target := r.Header.Get("X-Amz-Target")
	action := strings.TrimPrefix(target, "AmazonSSM.")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSONError(w, errorf("SerializationException", "reading request body: %v", err), "")
		return
	}
	h, ok := ssmActions[action]
	if !ok {
		id := s.countUnknown(regionName, "ssm:"+action)
		writeJSONError(w, errorf("UnknownOperationException", "Unknown operation %s", target), id)
		return
	}
	var out any
	az := &authzCall{build: func(reg *region) []AuthzRequest { return ssmAuthzRequests(reg, action, body) }, denied: ssmDenied}
	id, aerr := s.serve(r, regionName, "ssm:"+action, nil, az, func(reg *region, now time.Time) (aerr *apiError) {
		if action == "PutParameter" {
			// The value's validation, asynchronous in SSM, runs with the
			// caller's permissions: without ec2:DescribeImages it fails.
			out, aerr = s.ssmPutParameter(reg, body, now, func(image string) bool {
				return len(az.deferred) == 0 && reg.imageAvailable(image, now)
			})
			return aerr
		}
		out, aerr = h(s, reg, body, now)
		return aerr
	})
	if aerr != nil {
		if aerr.Code == "RequestLimitExceeded" {
			aerr = errorf("ThrottlingException", "Rate exceeded")
		}
		writeJSONError(w, aerr, id)
		return
	}
	b, jerr := json.Marshal(out)
	if jerr != nil {
		writeJSONError(w, errInternal("encoding response: %v", jerr), id)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeJSONError(w http.ResponseWriter, e *apiError, requestID string) {
	status := e.Status
	if status == 0 || status == http.StatusPreconditionFailed {
		status = http.StatusBadRequest
	}
	if e.Code == "InternalError" {
		e = &apiError{Code: "InternalServerError", Message: e.Message, Status: http.StatusInternalServerError}
		status = http.StatusInternalServerError
	}
	b, _ := json.Marshal(map[string]string{"__type": e.Code, "message": e.Message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", requestID)
	w.Header().Set("X-Amzn-Errortype", e.Code)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func ssmValidation(format string, args ...any) *apiError {
	return errorf("ValidationException", format, args...)
}

func decodeSSM(body []byte, v any) *apiError {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf("SerializationException", "Could not parse request body: %v", err)
	}
	return nil
}

func checkParamName(name string) *apiError {
	switch {
	case name == "":
		return ssmValidation("1 validation error detected: Value at 'name' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case len(name) > 1011:
		return ssmValidation("Parameter name must be at most 1011 characters.")
	case !reParamName.MatchString(name):
		return ssmValidation("Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_.")
	case strings.Contains(name, "/") && !strings.HasPrefix(name, "/"):
		return ssmValidation("Parameter name must be a fully qualified name.")
	case strings.Count(name, "/") > 15:
		return ssmValidation("Parameter name hierarchy exceeds the maximum of 15 levels.")
	}
	first := strings.ToLower(strings.TrimPrefix(name, "/"))
	if strings.HasPrefix(first, "aws") || strings.HasPrefix(first, "ssm") {
		return ssmValidation("No access to reserved parameter name: %s.", name)
	}
	return nil
}

type ssmParameterOut struct {
	Name             string  `json:"Name"`
	Type             string  `json:"Type"`
	Value            string  `json:"Value"`
	Version          int64   `json:"Version"`
	LastModifiedDate float64 `json:"LastModifiedDate"`
	ARN              string  `json:"ARN"`
	DataType         string  `json:"DataType"`
	Selector         string  `json:"Selector,omitempty"`
}

func epochSeconds(t time.Time) float64 {
	return math.Round(float64(t.UnixNano())/1e6) / 1e3
}

func paramARN(regionName, name string) string {
	return "arn:aws:ssm:" + regionName + ":" + AccountID + ":parameter/" + strings.TrimPrefix(name, "/")
}

func (p *parameter) out(regionName string) ssmParameterOut {
	return ssmParameterOut{Name: p.name, Type: p.typ, Value: p.value, Version: p.version,
		LastModifiedDate: epochSeconds(p.modified), ARN: paramARN(regionName, p.name), DataType: p.dataType}
}

// ssmPutParameter writes a parameter. An aws:ec2:image value is validated
// after the call answers in SSM: the call succeeds, and the value changes
// only if valid(value) (nil: every value is); otherwise the parameter keeps
// its old value.
func (s *Sim) ssmPutParameter(r *region, body []byte, now time.Time, valid func(imageID string) bool) (any, *apiError) {
	var in struct {
		Name        string
		Value       *string
		Type        string
		Overwrite   bool
		DataType    string
		Description string
		Tier        string
		Tags        []struct{ Key, Value string }
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if err := checkParamName(in.Name); err != nil {
		return nil, err
	}
	if in.Value == nil || *in.Value == "" {
		return nil, ssmValidation("1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	if len(*in.Value) > 4096 && in.Tier != "Advanced" {
		return nil, ssmValidation("Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.")
	}
	switch in.Type {
	case "", "String", "StringList", "SecureString":
	default:
		return nil, ssmValidation("1 validation error detected: Value '%s' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]", in.Type)
	}
	switch in.DataType {
	case "":
		in.DataType = "text"
	case "text", "aws:ssm:integration":
	case "aws:ec2:image":
		if !reImageID.MatchString(*in.Value) {
			return nil, ssmValidation("The parameter value %s is not a valid AMI ID for data type aws:ec2:image.", *in.Value)
		}
	default:
		return nil, ssmValidation("The following data type is not supported: %s (Data type names are all lowercase.)", in.DataType)
	}
	if in.Overwrite && len(in.Tags) > 0 {
		return nil, ssmValidation("Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.")
	}
	p, exists := r.params[in.Name]
	if exists && !in.Overwrite {
		return nil, errorf("ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.")
	}
	tier := in.Tier
	if tier == "" || tier == "Intelligent-Tiering" {
		tier = "Standard"
	}
	if in.DataType == "aws:ec2:image" && valid != nil && !valid(*in.Value) {
		next := int64(1)
		if exists {
			next = p.version + 1
		}
		return map[string]any{"Version": next, "Tier": tier}, nil
	}
	if !exists {
		p = &parameter{name: in.Name, typ: "String", history: map[int64]paramVersion{}}
		r.params[in.Name] = p
	}
	if in.Type != "" {
		p.typ = in.Type
	}
	if p.version >= 100 {
		delete(p.history, p.version-99)
	}
	p.version++
	p.value, p.dataType, p.modified = *in.Value, in.DataType, now
	if in.Description != "" {
		p.description = in.Description
	}
	p.history[p.version] = paramVersion{value: p.value, modified: now}
	return map[string]any{"Version": p.version, "Tier": tier}, nil
}

// imageAvailable: the image exists in the region and is available.
func (r *region) imageAvailable(id string, now time.Time) bool {
	img, err := r.imageByID(id, now)
	return err == nil && img.state == "available"
}

// lookupParam resolves "name" or "name:version".
func (r *region) lookupParam(ref string) (ssmParameterOut, *apiError) {
	name, sel := ref, ""
	if i := strings.LastIndexByte(ref, ':'); i > 0 {
		name, sel = ref[:i], ref[i:]
	}
	p, ok := r.params[name]
	if !ok {
		return ssmParameterOut{}, errorf("ParameterNotFound", "Parameter %s not found.", name)
	}
	out := p.out(r.name)
	if sel != "" {
		v, err := strconv.ParseInt(sel[1:], 10, 64)
		h, ok := p.history[v]
		if err != nil || !ok {
			return ssmParameterOut{}, errorf("ParameterVersionNotFound", "Systems Manager could not find version %s of %s. Verify the version and try again.", sel[1:], name)
		}
		out.Value, out.Version, out.LastModifiedDate, out.Selector = h.value, v, epochSeconds(h.modified), sel
	}
	return out, nil
}

func (s *Sim) ssmGetParameter(r *region, body []byte, _ time.Time) (any, *apiError) {
	var in struct{ Name string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if in.Name == "" {
		return nil, ssmValidation("1 validation error detected: Value at 'name' failed to satisfy constraint: Member must not be null")
	}
	p, err := r.lookupParam(in.Name)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Parameter": p}, nil
}

func (s *Sim) ssmGetParameters(r *region, body []byte, _ time.Time) (any, *apiError) {
	var in struct{ Names []string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if len(in.Names) < 1 || len(in.Names) > 10 {
		return nil, ssmValidation("1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1")
	}
	params := []ssmParameterOut{}
	invalid := []string{}
	for _, n := range in.Names {
		p, err := r.lookupParam(n)
		if err != nil {
			invalid = append(invalid, n)
			continue
		}
		params = append(params, p)
	}
	return map[string]any{"Parameters": params, "InvalidParameters": invalid}, nil
}

func (s *Sim) ssmGetParametersByPath(r *region, body []byte, _ time.Time) (any, *apiError) {
	var in struct {
		Path       string
		Recursive  bool
		MaxResults int
		NextToken  string
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(in.Path, "/") {
		return nil, ssmValidation("The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\".")
	}
	if in.MaxResults == 0 {
		in.MaxResults = 10
	}
	if in.MaxResults < 1 || in.MaxResults > 10 {
		return nil, ssmValidation("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10", in.MaxResults)
	}
	prefix := strings.TrimSuffix(in.Path, "/") + "/"
	var names []string
	for name := range r.params {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || rest == "" || !in.Recursive && strings.Contains(rest, "/") {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	page, next, err := paginateList(names, func(string) bool { return true }, "ssm", in.NextToken, in.MaxResults)
	if err != nil {
		return nil, errorf("InvalidNextToken", "The specified token isn't valid.")
	}
	params := make([]ssmParameterOut, len(page))
	for i, name := range page {
		params[i] = r.params[name].out(r.name)
	}
	out := map[string]any{"Parameters": params}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

func (s *Sim) ssmDeleteParameter(r *region, body []byte, _ time.Time) (any, *apiError) {
	var in struct{ Name string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if _, ok := r.params[in.Name]; !ok {
		return nil, errorf("ParameterNotFound", "Parameter %s not found.", in.Name)
	}
	delete(r.params, in.Name)
	return map[string]any{}, nil
}

func (s *Sim) ssmDeleteParameters(r *region, body []byte, _ time.Time) (any, *apiError) {
	var in struct{ Names []string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if len(in.Names) < 1 || len(in.Names) > 10 {
		return nil, ssmValidation("1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1")
	}
	deleted, invalid := []string{}, []string{}
	for _, n := range in.Names {
		if _, ok := r.params[n]; ok {
			delete(r.params, n)
			deleted = append(deleted, n)
		} else {
			invalid = append(invalid, n)
		}
	}
	return map[string]any{"DeletedParameters": deleted, "InvalidParameters": invalid}, nil
}

// PutParameter sets an SSM parameter directly (no request, not counted).
func (s *Sim) PutParameter(regionName, name, value, dataType string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.region(regionName)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]any{"Name": name, "Value": value, "DataType": dataType, "Type": "String", "Overwrite": true})
	if _, err := s.ssmPutParameter(r, b, s.Now(), nil); err != nil {
		return err
	}
	return nil
}
