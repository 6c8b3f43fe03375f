package ec2sim

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Authorization: with an Authorizer set, every call of a known caller is
// authorized the way AWS does before it is served. The simulator knows what
// a call touches, so it builds the requests: the action on each resource
// (the resource types of the Service Authorization Reference), the request's
// context (aws:RequestedRegion, aws:RequestTag/…, aws:TagKeys, the
// resources' aws:ResourceTag/…, ec2:CreateAction, kms:ViaService), and the
// authorizations AWS makes beyond the call itself (see Extra). The
// Authorizer evaluates them against the caller's policies.

// AuthzRequest is one authorization AWS makes for a call.
type AuthzRequest struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	// Context values are a string or a []string.
	Context map[string]any `json:"context"`
	// Because names the extra authorization this is ("" = the call's own);
	// see Extra.
	Because string `json:"-"`
	// Deferred: a denial does not fail the call; the service drops the
	// call's effect later instead (aws:ec2:image parameter validation).
	Deferred bool `json:"-"`
}

// Denial is a request the caller's policies do not allow.
type Denial struct {
	Request   AuthzRequest
	Principal string // the caller's role ARN
	// Session is the role session ARN the error message names.
	Session  string
	Explicit bool
}

// Authorizer evaluates a caller's requests.
type Authorizer interface {
	// Authorize returns the first request of reqs that accessKey's
	// policies deny, or nil. A caller the Authorizer does not know is
	// allowed everything unless the Authorizer is strict.
	Authorize(ctx context.Context, accessKey string, reqs []AuthzRequest) (*Denial, error)
	// Known tells whether accessKey is an identity with policies; the
	// simulator builds requests only for those (and all, when strict).
	Known(accessKey string) bool
}

// SetAuthorizer switches authorization on (nil: off, every call allowed).
func (s *Sim) SetAuthorizer(a Authorizer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authz = a
}

// ExtraAuthorization is one row of Extra.
type ExtraAuthorization struct {
	Call, When, Requires, Source string
}

// Extra lists what AWS authorizes beyond the call itself, and where AWS
// documents it. The simulator builds these requests (Because = When).
var Extra = []ExtraAuthorization{
	{"ssm:PutParameter", becauseImageParameter, "ec2:DescribeImages (a denial leaves the value unchanged; PutParameter still succeeds)",
		"https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-ec2-aliases.html"},
	{"ec2:CreateImage", becauseTagOnCreate("CreateImage"), "ec2:CreateTags on each tagged image and snapshot, with ec2:CreateAction=CreateImage",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html"},
	{"ec2:CopyImage", becauseTagOnCreate("CopyImage"), "ec2:CreateTags on the new image and snapshots, with ec2:CreateAction=CopyImage",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/copy-ami-permissions.html"},
	{"ec2:DeregisterImage", becauseDeleteSnapshots, "ec2:DeleteSnapshot on each snapshot deleted with the image",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/deregister-ami.html"},
	{"ec2:DescribeImageReferences", becauseReferences, "each resource type's read: ec2:DescribeInstances, ec2:DescribeLaunchTemplates, ssm:DescribeParameters, ssm:GetParameters, imagebuilder:ListImageRecipes, imagebuilder:ListContainerRecipes, imagebuilder:GetContainerRecipe",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-ami-references.html"},
	{"ec2:RunInstances", becauseTagOnCreate("RunInstances"), "ec2:CreateTags on each tagged instance and volume, with ec2:CreateAction=RunInstances",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html"},
	{"ec2:RunInstances", becausePassRole, "iam:PassRole on the instance profile's role (iam:PassedToService=ec2.amazonaws.com; the simulator takes the role to be named as its profile)",
		"https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html"},
	{"ec2:CopyImage", becauseEncryptedCopy, "kms:DescribeKey, kms:CreateGrant (kms:GrantIsForAWSResource), kms:GenerateDataKeyWithoutPlaintext, kms:Decrypt, kms:ReEncrypt* on the key, with kms:ViaService=ec2.<region>.amazonaws.com",
		"https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption-requirements.html"},
}

const (
	becauseImageParameter  = "PutParameter with DataType aws:ec2:image"
	becauseDeleteSnapshots = "DeregisterImage with DeleteAssociatedSnapshots"
	becauseReferences      = "DescribeImageReferences reads each resource type"
	becauseEncryptedCopy   = "CopyImage with Encrypted and KmsKeyId"
	becausePassRole        = "RunInstances with IamInstanceProfile"
)

func becauseTagOnCreate(action string) string { return action + " with TagSpecifications" }

// accessKey reads the access key id from the SigV4 credential scope.
func accessKey(r *http.Request) string {
	cred := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		if i := strings.Index(auth, "Credential="); i >= 0 {
			cred = auth[i+len("Credential="):]
		}
	} else {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// authzCall is how one service authorizes a call: build makes the requests
// (under the lock), denied turns a denial into the service's error.
// authorize records the deferred requests that were denied.
type authzCall struct {
	build    func(r *region) []AuthzRequest
	denied   func(*Denial) *apiError
	deferred []AuthzRequest
}

// authorize evaluates the caller's requests (built under the lock,
// evaluated outside it) and returns the error to answer, if any.
func (s *Sim) authorize(req *http.Request, regionName string, az *authzCall) *apiError {
	if az == nil {
		return nil
	}
	s.mu.Lock()
	a := s.authz
	key := accessKey(req)
	if a == nil || !a.Known(key) {
		s.mu.Unlock()
		return nil
	}
	reg, rerr := s.region(regionName)
	if rerr != nil {
		s.mu.Unlock()
		return nil // the call answers the region error itself
	}
	reqs := az.build(reg)
	s.mu.Unlock()
	for i := range reqs {
		if reqs[i].Context == nil {
			reqs[i].Context = map[string]any{}
		}
		reqs[i].Context["aws:RequestedRegion"] = regionName
	}
	var hard, soft []AuthzRequest
	for _, r := range reqs {
		if r.Deferred {
			soft = append(soft, r)
		} else {
			hard = append(hard, r)
		}
	}
	d, err := a.Authorize(req.Context(), key, hard)
	if err != nil {
		return errInternal("authorizing: %v", err)
	}
	if d != nil {
		return az.denied(d)
	}
	for _, r := range soft {
		d, err := a.Authorize(req.Context(), key, []AuthzRequest{r})
		if err != nil {
			return errInternal("authorizing: %v", err)
		}
		if d != nil {
			az.deferred = append(az.deferred, r)
		}
	}
	return nil
}

// notAuthorized is IAM's sentence for a denial, as the services quote it.
func notAuthorized(d *Denial) string {
	why := "no identity-based policy allows the " + d.Request.Action + " action"
	if d.Explicit {
		why = "of an explicit deny in an identity-based policy"
	}
	msg := fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because %s", d.Session, d.Request.Action, d.Request.Resource, why)
	if d.Request.Because != "" {
		msg += " (required by " + d.Request.Because + ")"
	}
	return msg
}

// encodedMessage is the "encoded authorization failure message" EC2 adds:
// here base64 of the JSON that sts:DecodeAuthorizationMessage would return.
func encodedMessage(d *Denial) string {
	b, _ := json.Marshal(map[string]any{
		"allowed":      false,
		"explicitDeny": d.Explicit,
		"context": map[string]any{
			"principal":  map[string]string{"arn": d.Session},
			"action":     d.Request.Action,
			"resource":   d.Request.Resource,
			"conditions": d.Request.Context,
		},
	})
	return base64.StdEncoding.EncodeToString(b)
}

// EC2 answers 403 UnauthorizedOperation with an encoded message.
func ec2Denied(d *Denial) *apiError {
	return &apiError{Code: "UnauthorizedOperation", Status: http.StatusForbidden,
		Message: "You are not authorized to perform this operation. " + notAuthorized(d) + ". Encoded authorization failure message: " + encodedMessage(d)}
}

// SSM answers 400 AccessDeniedException.
func ssmDenied(d *Denial) *apiError {
	return &apiError{Code: "AccessDeniedException", Status: http.StatusBadRequest, Message: notAuthorized(d)}
}

// Auto Scaling answers 403 AccessDenied.
func autoScalingDenied(d *Denial) *apiError {
	return &apiError{Code: "AccessDenied", Status: http.StatusForbidden, Message: notAuthorized(d)}
}

// ARNs. Images and snapshots carry no account; the rest carry AccountID.
func imageARN(region, id string) string    { return "arn:aws:ec2:" + region + "::image/" + id }
func snapshotARN(region, id string) string { return "arn:aws:ec2:" + region + "::snapshot/" + id }
func ownedARN(service, region, resource string) string {
	return "arn:aws:" + service + ":" + region + ":" + AccountID + ":" + resource
}

// resourceTags adds aws:ResourceTag/<key> for each tag.
func resourceTags(ctx map[string]any, tags map[string]string) map[string]any {
	for k, v := range tags {
		ctx["aws:ResourceTag/"+k] = v
	}
	return ctx
}

// requestTags adds aws:RequestTag/<key> and aws:TagKeys for the tags a call
// sets.
func requestTags(ctx map[string]any, tags []tag) map[string]any {
	if len(tags) == 0 {
		return ctx
	}
	keys := make([]string, 0, len(tags))
	for _, t := range tags {
		ctx["aws:RequestTag/"+t.Key] = t.Value
		keys = append(keys, t.Key)
	}
	sort.Strings(keys)
	ctx["aws:TagKeys"] = keys
	return ctx
}

func withCreateAction(ctx map[string]any, action string) map[string]any {
	ctx["ec2:CreateAction"] = action
	return ctx
}

func clone(ctx map[string]any) map[string]any {
	out := make(map[string]any, len(ctx)+2)
	for k, v := range ctx {
		out[k] = v
	}
	return out
}

// ec2AuthzRequests: what EC2 authorizes for action with parameters p in
// region r. Malformed parameters build no request: the call then answers its
// own validation error, as AWS validates before it authorizes resources.
func (s *Sim) ec2AuthzRequests(r *region, action string, p params) []AuthzRequest {
	own := func(resource string, ctx map[string]any) AuthzRequest {
		return AuthzRequest{Action: "ec2:" + action, Resource: resource, Context: ctx}
	}
	switch action {
	case "CreateImage":
		specs, _ := p.tagSpecs("image", "snapshot")
		inst := ownedARN("ec2", r.name, "instance/"+p.str("InstanceId"))
		instCtx := map[string]any{}
		if in, ok := r.instances[p.str("InstanceId")]; ok {
			resourceTags(instCtx, in.tags)
		}
		reqs := []AuthzRequest{own(inst, instCtx)}
		reqs = append(reqs, newImageRequests(r.name, "ec2:"+action, specs)...)
		return append(reqs, tagOnCreate(r.name, action, specs)...)
	case "CopyImage":
		specs, _ := p.tagSpecs("image", "snapshot")
		srcRegion, srcID := p.str("SourceRegion"), p.str("SourceImageId")
		srcCtx := requestTags(map[string]any{}, allTags(specs))
		if src, ok := s.regions[srcRegion]; ok {
			if img, ok := src.images[srcID]; ok {
				resourceTags(srcCtx, img.tags)
			}
		}
		reqs := []AuthzRequest{own(imageARN(srcRegion, srcID), srcCtx)}
		reqs = append(reqs, newImageRequests(r.name, "ec2:"+action, specs)...)
		reqs = append(reqs, tagOnCreate(r.name, action, specs)...)
		if enc, _ := p.boolean("Encrypted"); enc && p.str("KmsKeyId") != "" {
			reqs = append(reqs, kmsForCopy(r.name, p.str("KmsKeyId"))...)
		}
		return reqs
	case "DeregisterImage":
		id := p.str("ImageId")
		ctx := map[string]any{}
		img, ok := r.images[id]
		if ok {
			resourceTags(ctx, img.tags)
		}
		reqs := []AuthzRequest{own(imageARN(r.name, id), ctx)}
		if del, _ := p.boolean("DeleteAssociatedSnapshots"); del && ok {
			for _, sid := range r.snapshotsOnlyOf(img) {
				sctx := map[string]any{}
				if sn, ok := r.snapshots[sid]; ok {
					resourceTags(sctx, sn.tags)
				}
				reqs = append(reqs, AuthzRequest{Action: "ec2:DeleteSnapshot", Resource: snapshotARN(r.name, sid), Context: sctx, Because: becauseDeleteSnapshots})
			}
		}
		return reqs
	case "DeleteSnapshot", "ModifySnapshotAttribute", "DescribeSnapshotAttribute":
		id := p.str("SnapshotId")
		ctx := map[string]any{}
		if sn, ok := r.snapshots[id]; ok {
			resourceTags(ctx, sn.tags)
		}
		return []AuthzRequest{own(snapshotARN(r.name, id), ctx)}
	case "EnableImageDeprecation", "DisableImageDeprecation", "ModifyImageAttribute", "DescribeImageAttribute",
		"EnableImage", "DisableImage", "EnableImageDeregistrationProtection", "DisableImageDeregistrationProtection":
		id := p.str("ImageId")
		ctx := map[string]any{}
		if img, ok := r.images[id]; ok {
			resourceTags(ctx, img.tags)
		}
		return []AuthzRequest{own(imageARN(r.name, id), ctx)}
	case "CreateTags", "DeleteTags":
		tags, _ := p.tags("Tag")
		var reqs []AuthzRequest
		for _, id := range p.list("ResourceId") {
			arn, current := r.resourceOf(id)
			if arn == "" {
				continue
			}
			ctx := resourceTags(map[string]any{}, current)
			if action == "CreateTags" {
				requestTags(ctx, tags)
			} else if len(tags) > 0 {
				keys := make([]string, len(tags))
				for i, t := range tags {
					keys[i] = t.Key
				}
				sort.Strings(keys)
				ctx["aws:TagKeys"] = keys
			}
			reqs = append(reqs, own(arn, ctx))
		}
		return reqs
	case "CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeleteLaunchTemplate":
		lt, err := r.templateByRef(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
		if err != nil {
			return []AuthzRequest{own(ownedARN("ec2", r.name, "launch-template/"+p.str("LaunchTemplateId")), map[string]any{})}
		}
		return []AuthzRequest{own(ownedARN("ec2", r.name, "launch-template/"+lt.id), resourceTags(map[string]any{}, lt.tags))}
	case "CreateImageUsageReport":
		// The image, and the report it makes (with the tags requested for it).
		id := p.str("ImageId")
		ctx := map[string]any{}
		if img, ok := r.images[id]; ok {
			resourceTags(ctx, img.tags)
		}
		specs, _ := p.tagSpecs("image-usage-report")
		reportCtx := map[string]any{}
		if tags := tagsFor(specs, "image-usage-report"); len(tags) > 0 {
			requestTags(reportCtx, tags)
		}
		return []AuthzRequest{own(imageARN(r.name, id), ctx), own(ownedARN("ec2", r.name, "image-usage-report/*"), reportCtx)}
	case "DeleteImageUsageReport":
		return []AuthzRequest{own(ownedARN("ec2", r.name, "image-usage-report/"+p.str("ReportId")), map[string]any{})}
	case "DescribeImageReferences":
		return append([]AuthzRequest{own("*", map[string]any{})}, referenceReads(r, p)...)
	case "RunInstances":
		return runInstancesRequests(r, p)
	case "StartInstances", "StopInstances", "TerminateInstances":
		var reqs []AuthzRequest
		for _, id := range p.list("InstanceId") {
			ctx := map[string]any{}
			if in, ok := r.instances[id]; ok {
				resourceTags(ctx, in.tags)
			}
			reqs = append(reqs, own(ownedARN("ec2", r.name, "instance/"+id), ctx))
		}
		return reqs
	}
	// Describe* and the actions no resource-level permission covers.
	return []AuthzRequest{own("*", map[string]any{})}
}

// newImageRequests: the image (and snapshots) a create call makes, not yet
// existing ("image/*"), with the tags the call puts on them.
func newImageRequests(region, action string, specs []tagSpec) []AuthzRequest {
	ctx := requestTags(map[string]any{}, allTags(specs))
	return []AuthzRequest{
		{Action: action, Resource: imageARN(region, "*"), Context: ctx},
		{Action: action, Resource: snapshotARN(region, "*"), Context: clone(ctx)},
	}
}

// tagOnCreate: a create call with TagSpecifications is also authorized as
// ec2:CreateTags on each tagged resource, with ec2:CreateAction.
func tagOnCreate(region, action string, specs []tagSpec) []AuthzRequest {
	var reqs []AuthzRequest
	for _, sp := range specs {
		if len(sp.Tags) == 0 {
			continue
		}
		arn := imageARN(region, "*")
		if sp.ResourceType == "snapshot" {
			arn = snapshotARN(region, "*")
		}
		ctx := withCreateAction(requestTags(map[string]any{}, sp.Tags), action)
		reqs = append(reqs, AuthzRequest{Action: "ec2:CreateTags", Resource: arn, Context: ctx, Because: becauseTagOnCreate(action)})
	}
	return reqs
}

func allTags(specs []tagSpec) []tag {
	seen := map[string]bool{}
	var out []tag
	for _, sp := range specs {
		for _, t := range sp.Tags {
			if !seen[t.Key] {
				seen[t.Key] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// kmsForCopy: EC2 uses the key on the caller's behalf (kms:ViaService).
func kmsForCopy(region, keyID string) []AuthzRequest {
	arn := keyID
	if !strings.HasPrefix(arn, "arn:") {
		if strings.HasPrefix(keyID, "alias/") {
			arn = ownedARN("kms", region, keyID)
		} else {
			arn = ownedARN("kms", region, "key/"+keyID)
		}
	}
	via := func() map[string]any {
		return map[string]any{"kms:ViaService": "ec2." + region + ".amazonaws.com", "kms:CallerAccount": AccountID}
	}
	var reqs []AuthzRequest
	for _, a := range []string{"kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"} {
		reqs = append(reqs, AuthzRequest{Action: a, Resource: arn, Context: via(), Because: becauseEncryptedCopy})
	}
	grant := via()
	grant["kms:GrantIsForAWSResource"] = "true"
	return append(reqs, AuthzRequest{Action: "kms:CreateGrant", Resource: arn, Context: grant, Because: becauseEncryptedCopy})
}

// referenceReads: DescribeImageReferences reads each resource type it is
// asked about with the caller's permissions.
func referenceReads(r *region, p params) []AuthzRequest {
	types := map[string]bool{}
	if all, _ := p.boolean("IncludeAllResourceTypes"); all {
		for _, t := range []string{"ec2:Instance", "ec2:LaunchTemplate", "ssm:Parameter", "imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe"} {
			types[t] = true
		}
	}
	for _, n := range p.indexes("ResourceType") {
		types[p.str(member("ResourceType", n)+"ResourceType")] = true
	}
	read := func(action, resource string) AuthzRequest {
		return AuthzRequest{Action: action, Resource: resource, Context: map[string]any{}, Because: becauseReferences}
	}
	var reqs []AuthzRequest
	if types["ec2:Instance"] {
		reqs = append(reqs, read("ec2:DescribeInstances", "*"))
	}
	if types["ec2:LaunchTemplate"] {
		reqs = append(reqs, read("ec2:DescribeLaunchTemplates", "*"))
	}
	if types["ssm:Parameter"] {
		reqs = append(reqs, read("ssm:DescribeParameters", "*"), read("ssm:GetParameters", ownedARN("ssm", r.name, "parameter/*")))
	}
	if types["imagebuilder:ImageRecipe"] {
		reqs = append(reqs, read("imagebuilder:ListImageRecipes", "*"))
	}
	if types["imagebuilder:ContainerRecipe"] {
		reqs = append(reqs, read("imagebuilder:ListContainerRecipes", "*"), read("imagebuilder:GetContainerRecipe", ownedARN("imagebuilder", r.name, "container-recipe/*")))
	}
	return reqs
}

// resourceOf maps a resource id to its ARN and current tags ("" for an id
// of no resource type the simulator has).
func (r *region) resourceOf(id string) (string, map[string]string) {
	switch {
	case strings.HasPrefix(id, "ami-"):
		if img, ok := r.images[id]; ok {
			return imageARN(r.name, id), img.tags
		}
		return imageARN(r.name, id), nil
	case strings.HasPrefix(id, "snap-"):
		if sn, ok := r.snapshots[id]; ok {
			return snapshotARN(r.name, id), sn.tags
		}
		return snapshotARN(r.name, id), nil
	case strings.HasPrefix(id, "i-"):
		arn := ownedARN("ec2", r.name, "instance/"+id)
		if in, ok := r.instances[id]; ok {
			return arn, in.tags
		}
		return arn, nil
	case strings.HasPrefix(id, "vol-"):
		arn := ownedARN("ec2", r.name, "volume/"+id)
		if v, ok := r.volumes[id]; ok {
			return arn, v.tags
		}
		return arn, nil
	case strings.HasPrefix(id, "lt-"):
		arn := ownedARN("ec2", r.name, "launch-template/"+id)
		if lt, ok := r.templates[id]; ok {
			return arn, lt.tags
		}
		return arn, nil
	}
	// Not a taggable resource of the simulator: the call answers InvalidID.
	return "", nil
}

// snapshotsOnlyOf: the image's snapshots no other image uses (those
// DeleteAssociatedSnapshots deletes).
func (r *region) snapshotsOnlyOf(img *image) []string {
	var out []string
	for _, sid := range img.snapshotIDs() {
		if sn, ok := r.snapshots[sid]; ok && len(sn.usedBy) <= 1 {
			out = append(out, sid)
		}
	}
	return out
}

// ssmAuthzRequests: the parameters an SSM call names; PutParameter of an
// aws:ec2:image value also needs ec2:DescribeImages, checked when SSM
// validates the value (deferred).
func ssmAuthzRequests(r *region, action string, body []byte) []AuthzRequest {
	switch action {
	case "SendCommand":
		return sendCommandRequests(r, body)
	case "GetCommandInvocation", "ListCommandInvocations", "ListCommands", "CancelCommand", "DescribeInstanceInformation":
		// No resource-level permissions: the Service Authorization
		// Reference lists no resource type for these actions.
		return []AuthzRequest{{Action: "ssm:" + action, Resource: "*", Context: map[string]any{}}}
	}
	var in struct {
		Name     string
		Names    []string
		Path     string
		DataType string
		Tags     []struct{ Key, Value string }
	}
	_ = decodeSSM(body, &in)
	param := func(name string) string {
		return ownedARN("ssm", r.name, "parameter/"+strings.TrimPrefix(name, "/"))
	}
	names := in.Names
	if in.Name != "" {
		names = append(names, in.Name)
	}
	if in.Path != "" {
		names = append(names, in.Path)
	}
	var reqs []AuthzRequest
	for _, n := range names {
		if i := strings.LastIndexByte(n, ':'); i > 0 {
			n = n[:i] // name:version
		}
		ctx := map[string]any{}
		if action == "PutParameter" {
			var tags []tag
			for _, t := range in.Tags {
				tags = append(tags, tag{t.Key, t.Value})
			}
			requestTags(ctx, tags)
		}
		reqs = append(reqs, AuthzRequest{Action: "ssm:" + action, Resource: param(n), Context: ctx})
	}
	if action == "PutParameter" && in.DataType == "aws:ec2:image" {
		reqs = append(reqs, AuthzRequest{Action: "ec2:DescribeImages", Resource: "*", Context: map[string]any{}, Because: becauseImageParameter, Deferred: true})
	}
	return reqs
}

// sendCommandRequests: SendCommand is authorized on the document and on
// each instance, whose tags are both aws:ResourceTag/<key> and
// ssm:resourceTag/<key> (the Service Authorization Reference's instance
// resource for ssm:SendCommand;
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html,
// https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cmdsec.html).
func sendCommandRequests(r *region, body []byte) []AuthzRequest {
	var in struct {
		DocumentName string
		InstanceIds  []string
	}
	_ = decodeSSM(body, &in)
	name := in.DocumentName
	if i := strings.LastIndex(name, ":document/"); strings.HasPrefix(name, "arn:") && i > 0 {
		name = name[i+len(":document/"):]
	}
	reqs := []AuthzRequest{{Action: "ssm:SendCommand", Resource: documentARN(r, name), Context: map[string]any{}}}
	for _, id := range in.InstanceIds {
		ctx := map[string]any{}
		if inst, ok := r.instances[id]; ok {
			resourceTags(ctx, inst.tags)
			for k, v := range inst.tags {
				ctx["ssm:resourceTag/"+k] = v
			}
		}
		reqs = append(reqs, AuthzRequest{Action: "ssm:SendCommand", Resource: ownedARN("ec2", r.name, "instance/"+id), Context: ctx})
	}
	return reqs
}

// runInstancesRequests: RunInstances is authorized on the instance and
// volumes it creates (instance/*, volume/*, network-interface/*, with the
// tags it puts on them and the instance's type and profile), on the image,
// the subnet and the security groups it uses, as ec2:CreateTags on each
// resource type it tags, and as iam:PassRole for the instance profile's
// role (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ExamplePolicies_EC2.html#iam-example-runinstances).
func runInstancesRequests(r *region, p params) []AuthzRequest {
	own := func(resource string, ctx map[string]any) AuthzRequest {
		return AuthzRequest{Action: "ec2:RunInstances", Resource: resource, Context: ctx}
	}
	specs, _ := p.tagSpecs("instance", "volume", "network-interface")
	profile := p.str("IamInstanceProfile.Arn")
	if name := p.str("IamInstanceProfile.Name"); profile == "" && name != "" {
		profile = "arn:aws:iam::" + AccountID + ":instance-profile/" + name
	}
	instCtx := requestTags(map[string]any{}, tagsFor(specs, "instance"))
	instCtx["ec2:InstanceType"] = cmp.Or(p.str("InstanceType"), "t3.micro")
	if profile != "" {
		instCtx["ec2:InstanceProfile"] = profile
	}
	reqs := []AuthzRequest{
		own(ownedARN("ec2", r.name, "instance/*"), instCtx),
		own(ownedARN("ec2", r.name, "volume/*"), requestTags(map[string]any{}, tagsFor(specs, "volume"))),
		own(ownedARN("ec2", r.name, "network-interface/*"), requestTags(map[string]any{}, tagsFor(specs, "network-interface"))),
	}
	if id := p.str("ImageId"); id != "" {
		ctx := map[string]any{}
		if img, ok := r.images[id]; ok {
			resourceTags(ctx, img.tags)
			ctx["ec2:Owner"] = img.ownerID
			if img.ownerAlias != "" {
				ctx["ec2:Owner"] = img.ownerAlias
			}
		}
		reqs = append(reqs, own(imageARN(r.name, id), ctx))
	}
	az := cmp.Or(p.str("Placement.AvailabilityZone"), r.name+"a")
	subnet := cmp.Or(p.str("SubnetId"), defaultSubnet(az))
	reqs = append(reqs, own(ownedARN("ec2", r.name, "subnet/"+subnet), map[string]any{}))
	groups := append(p.list("SecurityGroupId"), p.list("SecurityGroup")...)
	if len(groups) == 0 {
		groups = []string{defaultSecurityGroup(r.name)}
	}
	for _, g := range groups {
		reqs = append(reqs, own(ownedARN("ec2", r.name, "security-group/"+g), map[string]any{}))
	}
	for _, sp := range specs {
		if len(sp.Tags) == 0 {
			continue
		}
		arn := ownedARN("ec2", r.name, sp.ResourceType+"/*")
		ctx := withCreateAction(requestTags(map[string]any{}, sp.Tags), "RunInstances")
		reqs = append(reqs, AuthzRequest{Action: "ec2:CreateTags", Resource: arn, Context: ctx, Because: becauseTagOnCreate("RunInstances")})
	}
	if profile != "" {
		role := "arn:aws:iam::" + AccountID + ":role/" + profile[strings.LastIndexByte(profile, '/')+1:]
		reqs = append(reqs, AuthzRequest{Action: "iam:PassRole", Resource: role,
			Context: map[string]any{"iam:PassedToService": "ec2.amazonaws.com"}, Because: becausePassRole})
	}
	return reqs
}
