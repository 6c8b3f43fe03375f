package rotation

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecodePolicy_Full(t *testing.T) {
	p, err := DecodePolicy(readFixture(t, "policy-full.json"))
	if err != nil {
		t.Fatalf("DecodePolicy: %v", err)
	}
	want := Policy{
		Name:             "nightly",
		Selector:         Selector{Tags: map[string]string{"amirotate:policy": "nightly", "Team": "*"}},
		CopyTo:           []CopyTarget{{Region: "eu-west-1", KMSKeyID: "alias/ami-dr"}, {Region: "ap-southeast-2"}},
		Retention:        Retention{Keep: 7, MaxAgeDays: 30},
		CopyRetention:    &Retention{Keep: 3},
		Tags:             map[string]string{"Environment": "prod"},
		CopyInstanceTags: []string{"Name", "Team"},

		DeprecateAfterDays:  14,
		ShareWith:           []string{"111122223333"},
		Publish:             Publish{SSMParameter: "/amirotate/{policy}/{instanceId}/latest", LaunchTemplates: true},
		BatchSize:           100,
		PollIntervalSeconds: 60,
		TimeoutMinutes:      240,
		NoReboot:            new(bool), // the fixture says false: this policy reboots

		MaxDeletionsPerInstance: DefaultMaxDeletionsPerInstance,
		Rebuild:                 Rebuild{CooldownMinutes: DefaultRebuildCooldownMinutes, Keep: DefaultRebuildKeep},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func TestDecodePolicy_Defaults(t *testing.T) {
	p, err := DecodePolicy(readFixture(t, "policy-minimal.json"))
	if err != nil {
		t.Fatalf("DecodePolicy: %v", err)
	}
	if got := p.Selector.Tags; !reflect.DeepEqual(got, map[string]string{TagPolicy: "web"}) {
		t.Errorf("selector = %v, want {amirotate:policy: web}", got)
	}
	if p.BatchSize != 100 || p.PollIntervalSeconds != 60 || p.TimeoutMinutes != 240 {
		t.Errorf("defaults: batchSize %d, pollIntervalSeconds %d, timeoutMinutes %d; want 100, 60, 240",
			p.BatchSize, p.PollIntervalSeconds, p.TimeoutMinutes)
	}
	if p.Reboots() {
		t.Error("noReboot defaults to true: a policy that says nothing never reboots its instances (as DLM)")
	}
	if p.MaxDeletionsPerInstance != DefaultMaxDeletionsPerInstance || p.Rebuild.CooldownMinutes != DefaultRebuildCooldownMinutes || p.Rebuild.Keep != DefaultRebuildKeep {
		t.Errorf("defaults: maxDeletionsPerInstance %d, rebuild %+v", p.MaxDeletionsPerInstance, p.Rebuild)
	}
}

func TestDecodePolicy_BatchSizeDefaultShrinksWithCopyRegions(t *testing.T) {
	p, err := DecodePolicy([]byte(`{"name":"a","retention":{"keep":1},"copyTo":[
		{"region":"eu-west-1"},{"region":"eu-west-2"},{"region":"eu-west-3"},{"region":"eu-north-1"},{"region":"eu-south-1"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.BatchSize*(1+len(p.CopyTo)) > MaxImagesPerBatch {
		t.Errorf("batchSize %d with %d copy regions exceeds %d images per batch", p.BatchSize, len(p.CopyTo), MaxImagesPerBatch)
	}
}

// TestDecodePolicy_Rejects lists one bad policy per rule; each must fail
// with an InvalidInputError whose message names the field and says what to do.
func TestDecodePolicy_Rejects(t *testing.T) {
	const ok = `"name":"nightly","retention":{"keep":7}`
	tests := []struct {
		name   string
		json   string
		field  string // the field the message must name
		advice string // part of what the message says
	}{
		{"unknown field", `{` + ok + `,"noreboot":true}`, "policy.noreboot", `did you mean "noReboot"`},
		{"unknown nested field", `{` + ok + `,"copyTo":[{"region":"eu-west-1","kms":"x"}]}`, "policy.copyTo[0].kms", "unknown field"},
		{"unknown field far from any", `{` + ok + `,"zzzzzzzz":1}`, "policy.zzzzzzzz", "known fields: allowPublic"},
		{"case-insensitive match refused", `{"name":"a","Retention":{"keep":1}}`, "policy.Retention", "case-sensitive"},
		{"duplicate key", `{` + ok + `,"name":"other"}`, "policy.name", "more than once"},
		{"trailing data", `{` + ok + `} {}`, "policy", "data after"},
		{"not an object", `[1,2]`, "policy", "JSON object"},
		{"null", `null`, "policy", "JSON object"},
		{"empty", ``, "policy", "empty"},
		{"syntax error", `{"name":`, "policy", "not valid JSON"},
		{"wrong type", `{"name":"a","retention":{"keep":"7"}}`, "policy.retention.keep", "whole number"},
		{"name missing", `{"retention":{"keep":7}}`, "policy.name", "missing"},
		{"name uppercase", `{"name":"Nightly","retention":{"keep":7}}`, "policy.name", "lowercase"},
		{"name too long", `{"name":"` + strings.Repeat("a", 33) + `","retention":{"keep":7}}`, "policy.name", "1-32"},
		{"retention both zero", `{"name":"a","retention":{}}`, "policy.retention", "keep and maxAgeDays are both 0; set at least one"},
		{"retention negative keep", `{"name":"a","retention":{"keep":-1,"maxAgeDays":3}}`, "policy.retention.keep", "set 0 to"},
		{"retention negative age", `{"name":"a","retention":{"keep":1,"maxAgeDays":-3}}`, "policy.retention.maxAgeDays", "set 0 to"},
		{"copy retention both zero", `{` + ok + `,"copyRetention":{}}`, "policy.copyRetention", "both 0"},
		{"bad region", `{` + ok + `,"copyTo":[{"region":"europe-west1"}]}`, "policy.copyTo[0].region", "like us-east-1"},
		{"missing region", `{` + ok + `,"copyTo":[{}]}`, "policy.copyTo[0].region", "missing"},
		{"duplicate region", `{` + ok + `,"copyTo":[{"region":"eu-west-1"},{"region":"eu-west-1"}]}`, "policy.copyTo[1].region", "already listed at copyTo[0]"},
		{"bad kms key", `{` + ok + `,"copyTo":[{"region":"eu-west-1","kmsKeyId":"my-key"}]}`, "policy.copyTo[0].kmsKeyId", "not a KMS key"},
		{"kms arn other region", `{` + ok + `,"copyTo":[{"region":"eu-west-1","kmsKeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]}`, "policy.copyTo[0].kmsKeyId", "destination region"},
		{"bad account", `{` + ok + `,"shareWith":["1111-2222-3333"]}`, "policy.shareWith[0]", "12 digits"},
		{"public without allowPublic", `{` + ok + `,"shareWith":["all"]}`, "policy.shareWith[0]", "allowPublic"},
		{"duplicate account", `{` + ok + `,"shareWith":["111122223333","111122223333"]}`, "policy.shareWith[1]", "twice"},
		{"selector key empty", `{` + ok + `,"selector":{"tags":{"":"x"}}}`, `policy.selector.tags[""]`, "empty"},
		{"selector key too long", `{` + ok + `,"selector":{"tags":{"` + strings.Repeat("k", 129) + `":"x"}}}`, "policy.selector.tags", "at most 128"},
		{"tag aws prefix", `{` + ok + `,"tags":{"aws:owner":"x"}}`, `policy.tags["aws:owner"]`, "reserved by AWS"},
		{"tag AWS prefix any case", `{` + ok + `,"tags":{"AWS:owner":"x"}}`, `policy.tags["AWS:owner"]`, "reserved by AWS"},
		{"tag amirotate prefix", `{` + ok + `,"tags":{"amirotate:keep":"x"}}`, `policy.tags["amirotate:keep"]`, "reserved for amirotate"},
		{"tag value too long", `{` + ok + `,"tags":{"a":"` + strings.Repeat("v", 257) + `"}}`, `policy.tags["a"]`, "at most 256"},
		{"copyInstanceTags aws", `{` + ok + `,"copyInstanceTags":["aws:cloudformation:stack-name"]}`, "policy.copyInstanceTags[0]", "reserved by AWS"},
		{"copyInstanceTags amirotate", `{` + ok + `,"copyInstanceTags":["amirotate:rebuild"]}`, "policy.copyInstanceTags[0]", "reserved for amirotate"},
		{"copyInstanceTags empty", `{` + ok + `,"copyInstanceTags":[""]}`, "policy.copyInstanceTags[0]", "empty"},
		{"copyInstanceTags duplicate", `{` + ok + `,"copyInstanceTags":["Name","Name"]}`, "policy.copyInstanceTags[1]", "twice"},
		{"copyInstanceTags also in tags", `{` + ok + `,"tags":{"Name":"x"},"copyInstanceTags":["Name"]}`, "policy.copyInstanceTags[0]", "also set in policy.tags"},
		{"too many tags", `{` + ok + `,"tags":{` + manyTags(42) + `}}`, "policy.tags", "at most 41 fit"},
		{"deprecate negative", `{` + ok + `,"deprecateAfterDays":-1}`, "policy.deprecateAfterDays", "0 (never)"},
		{"ssm unknown placeholder", `{` + ok + `,"publish":{"ssmParameter":"/a/{instance}"}}`, "policy.publish.ssmParameter", "unknown placeholder {instance}"},
		{"ssm unbalanced", `{` + ok + `,"publish":{"ssmParameter":"/a/{instanceId"}}`, "policy.publish.ssmParameter", "without a }"},
		{"ssm without instance", `{` + ok + `,"publish":{"ssmParameter":"/a/{policy}"}}`, "policy.publish.ssmParameter", "must contain {instanceId}"},
		{"ssm bad chars", `{` + ok + `,"publish":{"ssmParameter":"/a b/{instanceId}"}}`, "policy.publish.ssmParameter", "may only contain"},
		{"ssm reserved", `{` + ok + `,"publish":{"ssmParameter":"/aws/{instanceId}"}}`, "policy.publish.ssmParameter", "reserved"},
		{"ssm no leading slash", `{` + ok + `,"publish":{"ssmParameter":"a/{instanceId}"}}`, "policy.publish.ssmParameter", "must start with /"},
		{"batch too big", `{` + ok + `,"batchSize":101}`, "policy.batchSize", "256 KiB"},
		{"batch too big for copies", `{` + ok + `,"batchSize":100,"copyTo":[{"region":"eu-west-1"},{"region":"eu-west-2"},{"region":"eu-west-3"},{"region":"eu-north-1"}]}`, "policy.batchSize", "set 1 to 60"},
		{"batch negative", `{` + ok + `,"batchSize":-1}`, "policy.batchSize", "set 1 to"},
		{"poll too long", `{` + ok + `,"pollIntervalSeconds":3601}`, "policy.pollIntervalSeconds", "set 1 to 3600"},
		{"timeout too long", `{` + ok + `,"timeoutMinutes":2881}`, "policy.timeoutMinutes", "48 hours"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePolicy([]byte(tt.json))
			var inv InvalidInputError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v (%T), want InvalidInputError", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field+":") && !strings.Contains(msg, tt.field) {
				t.Errorf("message does not name %s:\n%s", tt.field, msg)
			}
			if !strings.Contains(msg, tt.advice) {
				t.Errorf("message does not say %q:\n%s", tt.advice, msg)
			}
		})
	}
}

func manyTags(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"t` + strings.Repeat("x", i) + `":"v"`
	}
	return strings.Join(parts, ",")
}

// TestDecodePolicy_ReportsAllProblemsAtOnce guards that a user sees every
// problem in one run, one per line.
func TestDecodePolicy_ReportsAllProblemsAtOnce(t *testing.T) {
	_, err := DecodePolicy([]byte(`{"name":"Bad Name","retention":{},"copyTo":[{"region":"mars-1"}],
		"shareWith":["all","12"],"tags":{"aws:x":"1"},"deprecateAfterDays":-2}`))
	var inv InvalidInputError
	if !errors.As(err, &inv) {
		t.Fatalf("err = %v, want InvalidInputError", err)
	}
	// In the order of the policy reference.
	fields := []string{"policy.name", "policy.copyTo[0].region", "policy.retention", `policy.tags["aws:x"]`,
		"policy.deprecateAfterDays", "policy.shareWith[0]", "policy.shareWith[1]"}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(fields) || len(inv.Problems) != len(fields) {
		t.Fatalf("got %d lines, %d problems; want %d:\n%s", len(lines), len(inv.Problems), len(fields), err)
	}
	for i, f := range fields {
		if !strings.HasPrefix(lines[i], f+": ") {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], f+": ")
		}
	}
}

func TestDecodePolicy_ReportsAllUnknownFields(t *testing.T) {
	_, err := DecodePolicy([]byte(`{"name":"a","retention":{"keep":1,"keepp":2},"foo":1,"bar":2}`))
	if err == nil {
		t.Fatal("accepted unknown fields")
	}
	for _, f := range []string{"policy.retention.keepp", "policy.foo", "policy.bar"} {
		if !strings.Contains(err.Error(), f+": unknown field") {
			t.Errorf("missing %s in:\n%s", f, err)
		}
	}
}

func TestDecodePolicy_AcceptsValidValues(t *testing.T) {
	const ok = `"name":"nightly-2","retention":{"maxAgeDays":30}`
	tests := map[string]string{
		"gov region":           `"copyTo":[{"region":"us-gov-west-1"}]`,
		"china region":         `"copyTo":[{"region":"cn-north-1"},{"region":"cn-northwest-1"}]`,
		"new regions":          `"copyTo":[{"region":"ap-southeast-4"},{"region":"eu-central-2"},{"region":"il-central-1"},{"region":"mx-central-1"}]`,
		"kms key id":           `"copyTo":[{"region":"eu-west-1","kmsKeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}]`,
		"kms mrk":              `"copyTo":[{"region":"eu-west-1","kmsKeyId":"mrk-1234abcd12ab34cd56ef1234567890ab"}]`,
		"kms aws alias":        `"copyTo":[{"region":"eu-west-1","kmsKeyId":"alias/aws/ebs"}]`,
		"kms key arn":          `"copyTo":[{"region":"eu-west-1","kmsKeyId":"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}]`,
		"kms alias arn":        `"copyTo":[{"region":"eu-west-1","kmsKeyId":"arn:aws:kms:eu-west-1:111122223333:alias/dr"}]`,
		"public with consent":  `"shareWith":["all"],"allowPublic":true`,
		"selector any value":   `"selector":{"tags":{"Team":"*","aws:autoscaling:groupName":"web"}}`,
		"ssm all placeholders": `"publish":{"ssmParameter":"/amirotate/{policy}/{region}/{instanceId}"}`,
		"ssm flat name":        `"publish":{"ssmParameter":"ami-{instanceId}"}`,
		"41 tags":              `"tags":{` + manyTags(41) + `}`,
		"deprecate 10 years":   `"deprecateAfterDays":3650`,
	}
	for name, extra := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodePolicy([]byte(`{` + ok + `,` + extra + `}`)); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

func TestPolicy_ValidateAppliesDefaults(t *testing.T) {
	p := Policy{Name: "a", Retention: Retention{Keep: 2}}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate of a policy with unset defaults: %v", err)
	}
	p.BatchSize = 500
	if err := p.Validate(); err == nil {
		t.Error("Validate accepted batchSize 500")
	}
}

func TestPolicy_CheckHome(t *testing.T) {
	p := Policy{Name: "a", CopyTo: []CopyTarget{{Region: "eu-west-1"}, {Region: "us-east-1"}}}
	err := p.CheckHome("us-east-1")
	if err == nil || !strings.Contains(err.Error(), "policy.copyTo[1].region") {
		t.Errorf("CheckHome = %v, want a problem at policy.copyTo[1].region", err)
	}
	if err := p.CheckHome("ap-southeast-2"); err != nil {
		t.Errorf("CheckHome(other region) = %v", err)
	}
}

func TestPolicy_RetentionFor(t *testing.T) {
	p := Policy{Retention: Retention{Keep: 7}}
	if got := p.RetentionFor(true, false); got.Keep != 7 {
		t.Errorf("copy retention without copyRetention = %+v, want the policy's", got)
	}
	p.CopyRetention = &Retention{Keep: 3}
	if got := p.RetentionFor(true, false); got.Keep != 3 {
		t.Errorf("copy retention = %+v, want keep 3", got)
	}
	if got := p.RetentionFor(false, false); got.Keep != 7 {
		t.Errorf("source retention = %+v, want keep 7", got)
	}
}

func TestSSMParameterName(t *testing.T) {
	p := Policy{Name: "nightly", Publish: Publish{SSMParameter: "/amirotate/{policy}/{region}/{instanceId}"}}
	if got, want := SSMParameterName(p, "i-0123456789abcdef0", "eu-west-1"), "/amirotate/nightly/eu-west-1/i-0123456789abcdef0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := SSMParameterName(Policy{Name: "x"}, "i-1", "r"); got != "" {
		t.Errorf("no template: got %q, want empty", got)
	}
}

func TestPolicy_ShareWithOrganizationsAndOUs(t *testing.T) {
	const (
		org = "arn:aws:organizations::111111111111:organization/o-abcdefghij"
		ou  = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdef3456"
	)
	p, err := DecodePolicy([]byte(`{"name":"p","retention":{"keep":1},"shareWith":["` + ou + `","111122223333","` + org + `"]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := p.Shares()
	if !slices.Equal(got.Accounts, []string{"111122223333"}) || !slices.Equal(got.Organizations, []string{org}) ||
		!slices.Equal(got.OUs, []string{ou}) || got.Public {
		t.Errorf("Shares() = %+v", got)
	}
	for _, tc := range []struct{ entry, want string }{
		{"ou-ab12-cdef3456", "by its ARN"},
		{"o-abcdefghij", "by its ARN"},
		{"arn:aws:organizations::111111111111:organization/o-ABC", "not an organization ARN"},
		{"arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-x", "not an OU ARN"},
		{"arn:aws:iam::111111111111:root", "accounts, organizations and OUs only"},
		{"all", "allowPublic"},
		{org + "/", "not an organization ARN"},
	} {
		_, err := DecodePolicy([]byte(`{"name":"p","retention":{"keep":1},"shareWith":["` + tc.entry + `"]}`))
		if err == nil || !strings.Contains(err.Error(), "policy.shareWith[0]") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("shareWith %q: error %v, want one naming policy.shareWith[0] and %q", tc.entry, err, tc.want)
		}
	}
}

func TestPolicy_SharedCopiesRefuseTheAWSManagedKey(t *testing.T) {
	for _, key := range []string{"alias/aws/ebs", "arn:aws:kms:eu-west-1:111122223333:alias/aws/ebs"} {
		_, err := DecodePolicy([]byte(`{"name":"p","retention":{"keep":1},"shareWith":["111122223333"],"copyTo":[{"region":"eu-west-1","kmsKeyId":"` + key + `"}]}`))
		if err == nil || !strings.Contains(err.Error(), "policy.copyTo[0].kmsKeyId") || !strings.Contains(err.Error(), "customer managed key") {
			t.Errorf("kmsKeyId %s with shareWith: %v", key, err)
		}
	}
	// Without sharing the AWS managed key is a valid choice.
	if _, err := DecodePolicy([]byte(`{"name":"p","retention":{"keep":1},"copyTo":[{"region":"eu-west-1","kmsKeyId":"alias/aws/ebs"}]}`)); err != nil {
		t.Error(err)
	}
}
