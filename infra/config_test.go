package infra

import (
	"strings"
	"testing"

	"github.com/amirotate/amirotate/internal/rotation"
)

// These tests run without synthesizing (no jsii): validation happens before
// any construct is made.

func TestConfig_ExampleDeploymentFileIsValid(t *testing.T) {
	cfg, err := LoadConfig("../deploy/policies.json")
	if err != nil {
		t.Fatal(err)
	}
	props, err := cfg.Props(assetDir)
	if err != nil {
		t.Fatal(err)
	}
	p := withDefaults(*props)
	if err := validate(&p, "us-east-1"); err != nil {
		t.Fatal(err)
	}
}

func TestConfig_Rejects(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown top-level field", `{"policies":[],"alarmMail":"x"}`, `unknown field "alarmMail"`},
		{"unknown schedule field", `{"policies":[{"schedule":{"cron":"x"},"policy":{}}]}`, `unknown field "cron"`},
		{"policy decoded strictly", `{"policies":[{"schedule":{"expression":"cron(0 3 * * ? *)"},"policy":{"name":"a","retention":{"keep":1},"noreboot":true}}]}`, "noreboot"},
		{"policy validated", `{"policies":[{"schedule":{"expression":"cron(0 3 * * ? *)"},"policy":{"name":"a"}}]}`, "policies[0]: policy.retention"},
		{"missing policy", `{"policies":[{"schedule":{"expression":"cron(0 3 * * ? *)"}}]}`, "policies[0].policy: missing"},
		{"bad retention", `{"logRetentionDays":10,"policies":[]}`, "logRetentionDays: 10 is not a CloudWatch Logs retention"},
		{"trailing data", `{"policies":[]} {}`, "unexpected data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.file))
			if err == nil {
				_, err = cfg.Props(assetDir)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func validPolicy(name string) rotation.Policy {
	return rotation.Policy{Name: name, Retention: rotation.Retention{Keep: 3}}.WithDefaults()
}

func TestValidate_Rejects(t *testing.T) {
	daily := Schedule{Expression: "cron(0 3 * * ? *)"}
	emptyAssets := t.TempDir()
	for _, tc := range []struct {
		name  string
		props RotationProps
		home  string
		want  string
	}{
		{"no policies", RotationProps{}, "", "at least one policy"},
		{"duplicate names", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), daily}, {validPolicy("a"), daily}}}, "", "duplicate policy name"},
		{"invalid policy", RotationProps{Policies: []PolicySchedule{{rotation.Policy{Name: "Bad Name"}, daily}}}, "", "policy.name"},
		{"five-field cron", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), Schedule{Expression: "cron(0 3 * * ?)"}}}}, "", "6 fields"},
		{"unix cron", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), Schedule{Expression: "0 3 * * *"}}}}, "", "want cron("},
		{"both days", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), Schedule{Expression: "cron(0 3 1 * MON *)"}}}}, "", `must be "?"`},
		{"bad time zone", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), Schedule{Expression: "rate(1 day)", TimeZone: "Mars/Olympus"}}}}, "", "IANA time zone"},
		{"window too wide", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), Schedule{Expression: "rate(1 day)", FlexibleWindowMinutes: 1441}}}}, "", "flexibleWindowMinutes"},
		{"kms key without grant", RotationProps{Policies: []PolicySchedule{{func() rotation.Policy {
			p := validPolicy("a")
			p.CopyTo = []rotation.CopyTarget{{Region: "eu-west-1", KMSKeyID: "alias/ami"}}
			return p
		}(), daily}}}, "", "CopyKMSKeyArns is empty"},
		{"alias as key arn", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), daily}}, CopyKMSKeyArns: []string{"alias/ami"}}, "", "not a KMS key ARN"},
		{"copy to home", RotationProps{Policies: []PolicySchedule{{func() rotation.Policy {
			p := validPolicy("a")
			p.CopyTo = []rotation.CopyTarget{{Region: "us-east-1"}}
			return p
		}(), daily}}}, "us-east-1", "remove it from copyTo"},
		{"missing bootstrap", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), daily}}, AssetDir: emptyAssets}, "", "make build"},
		{"unknown placeholder", RotationProps{Policies: []PolicySchedule{{validPolicy("a"), daily}}, Definition: []byte(`{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"${CleanupFunctionArn}","End":true}}}`)}, "", "${CleanupFunctionArn}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.props.AssetDir == "" {
				tc.props.AssetDir = assetDir
			}
			p := withDefaults(tc.props)
			err := validate(&p, tc.home)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidate_AcceptsSchedules(t *testing.T) {
	for _, s := range []Schedule{
		{Expression: "cron(0 3 * * ? *)", TimeZone: "Europe/Berlin", FlexibleWindowMinutes: 15},
		{Expression: "cron(30 2 ? * SUN *)"},
		{Expression: "cron(0 */6 * * ? *)", TimeZone: "UTC"},
		{Expression: "rate(12 hours)"},
		{Expression: "rate(1 day)", Disabled: true},
	} {
		if err := validateSchedule(s); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func TestSSMPrefix(t *testing.T) {
	for _, tc := range []struct{ tmpl, policy, want string }{
		{"/amirotate/{policy}/{instanceId}/latest", "nightly", "amirotate/nightly/"},
		{"/images/{region}/{instanceId}", "p", "images/"},
		{"ami-{instanceId}", "p", "ami-"},
		{"", "p", ""},
	} {
		if got := ssmPrefix(tc.tmpl, tc.policy); got != tc.want {
			t.Errorf("ssmPrefix(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}
