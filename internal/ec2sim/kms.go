package ec2sim

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// KMS, as far as EBS encryption needs it: each region has the AWS managed
// key for EBS (alias aws/ebs, KeyManager AWS), which encrypts volumes and
// snapshots when no key is named; tests add customer managed keys
// (CreateKMSKey). DescribeKey answers for a key id, key ARN, alias name or
// alias ARN, as KMS does
// (https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html).
// Another account can never be given use of an AWS managed key, so images
// encrypted with it cannot be shared.

// AWSManagedEBSAlias is the alias of the AWS managed key for EBS.
const AWSManagedEBSAlias = "alias/aws/ebs"

type kmsKey struct {
	id, region, alias, manager string
	created                    time.Time
}

func (k *kmsKey) arn() string { return "arn:aws:kms:" + k.region + ":" + AccountID + ":key/" + k.id }

// awsEBSKeyID is the id of a region's AWS managed EBS key (stable).
func awsEBSKeyID(region string) string {
	h := sha256.Sum256([]byte("aws/ebs " + region))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// CreateKMSKey makes a customer managed key in region with an alias
// ("alias/name"; may be empty) and returns its ARN.
func (s *Sim) CreateKMSKey(region, alias string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256(fmt.Appendf(nil, "%s %s %d", region, alias, s.nextSeq()))
	k := &kmsKey{id: fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]), region: region, alias: alias, manager: "CUSTOMER", created: s.Now()}
	if s.kmsKeys == nil {
		s.kmsKeys = map[string]*kmsKey{}
	}
	s.kmsKeys[k.arn()] = k
	return k.arn()
}

// findKey resolves a key reference in region (nil: no such key).
func (s *Sim) findKey(region, ref string) *kmsKey {
	ebs := &kmsKey{id: awsEBSKeyID(region), region: region, alias: AWSManagedEBSAlias, manager: "AWS"}
	for _, k := range append([]*kmsKey{ebs}, s.regionKeys(region)...) {
		aliasARN := "arn:aws:kms:" + region + ":" + AccountID + ":" + k.alias
		if ref == k.id || ref == k.arn() || k.alias != "" && (ref == k.alias || ref == aliasARN) {
			return k
		}
	}
	return nil
}

func (s *Sim) regionKeys(region string) []*kmsKey {
	var out []*kmsKey
	for _, k := range s.kmsKeys {
		if k.region == region {
			out = append(out, k)
		}
	}
	return out
}

// resolveKMSKey is the key ARN EC2 reports for a volume or snapshot
// encrypted with ref ("" = the AWS managed key); an unknown ref is kept as
// kmsArn expands it.
func (s *Sim) resolveKMSKey(region, ref string) string {
	if ref == "" {
		ref = AWSManagedEBSAlias
	}
	if k := s.findKey(region, ref); k != nil {
		return k.arn()
	}
	return kmsArn(region, ref)
}

func (s *Sim) serveKMS(w http.ResponseWriter, r *http.Request, regionName string) {
	target := r.Header.Get("X-Amz-Target")
	action := strings.TrimPrefix(target, "TrentService.")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSONError(w, errorf("SerializationException", "reading request body: %v", err), "")
		return
	}
	if action != "DescribeKey" {
		id := s.countUnknown(regionName, "kms:"+action)
		writeJSONError(w, errorf("UnknownOperationException", "Unknown operation %s", target), id)
		return
	}
	var in struct{ KeyId string }
	_ = json.Unmarshal(body, &in)
	var out any
	az := &authzCall{build: func(reg *region) []AuthzRequest {
		arn := "arn:aws:kms:" + reg.name + ":" + AccountID + ":key/" + in.KeyId
		if k := s.findKey(reg.name, in.KeyId); k != nil {
			arn = k.arn()
		}
		return []AuthzRequest{{Action: "kms:DescribeKey", Resource: arn, Context: map[string]any{}}}
	}, denied: ssmDenied}
	id, aerr := s.serve(r, regionName, "kms:"+action, nil, az, func(reg *region, now time.Time) *apiError {
		if in.KeyId == "" {
			return errorf("ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
		}
		k := s.findKey(reg.name, in.KeyId)
		if k == nil {
			return errorf("NotFoundException", "Key '%s' does not exist", in.KeyId)
		}
		out = map[string]any{"KeyMetadata": map[string]any{
			"AWSAccountId": AccountID, "KeyId": k.id, "Arn": k.arn(), "KeyManager": k.manager,
			"KeyState": "Enabled", "Enabled": true, "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
			"Origin": "AWS_KMS", "CreationDate": float64(k.created.Unix()),
			"Description": map[bool]string{true: "Default key that protects my EBS volumes when no other key is defined", false: ""}[k.manager == "AWS"],
		}}
		return nil
	})
	if aerr != nil {
		writeJSONError(w, aerr, id)
		return
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// describeVolumes lists the volumes of the region (VolumeId.N, or the
// attachment.instance-id filter), with their encryption.
func (s *Sim) describeVolumes(c *call) *apiError {
	p := c.p
	fs, err := p.filters(set("attachment.instance-id", "volume-id", "encrypted"), true)
	if err != nil {
		return err
	}
	ids := p.list("VolumeId")
	var vols []*volume
	for _, id := range ids {
		v, ok := c.r.volumes[id]
		if !ok {
			return errorf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
		vols = append(vols, v)
	}
	if len(ids) == 0 {
		for _, in := range c.r.instanceList {
			vols = append(vols, in.volumes...)
		}
	}
	w := c.w
	var page []*volume
	for _, v := range vols {
		if matchFilters(fs, func(name string) []string {
			switch name {
			case "attachment.instance-id":
				return []string{v.instanceID}
			case "volume-id":
				return []string{v.id}
			case "encrypted":
				return []string{boolStr(v.encrypted)}
			}
			t, _ := tagFilterValues(v.tags, name)
			return t
		}) {
			page = append(page, v)
		}
	}
	xmlList(w, "volumeSet", page, func(v *volume) {
		w.el("volumeId", v.id)
		w.integer("size", v.size)
		w.el("availabilityZone", c.r.name+"a")
		w.el("status", "in-use")
		w.el("createTime", fmtTime(v.attachTime))
		xmlList(w, "attachmentSet", []*volume{v}, func(v *volume) {
			w.el("volumeId", v.id)
			w.el("instanceId", v.instanceID)
			w.el("device", v.device)
			w.el("status", "attached")
			w.el("attachTime", fmtTime(v.attachTime))
			w.boolean("deleteOnTermination", v.deleteOnTermination)
		})
		w.el("volumeType", v.volumeType)
		w.boolean("encrypted", v.encrypted)
		w.opt("kmsKeyId", v.kmsKeyID)
		w.tagSet("tagSet", v.tags)
	})
	return nil
}
