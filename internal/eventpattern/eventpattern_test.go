package eventpattern

import (
	"strings"
	"testing"
)

// docEvent is the example event of the EventBridge content-filtering page
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html),
// with the fields its examples match on.
const docEvent = `{
  "version": "0",
  "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
  "detail-type": "EC2 Instance State-change Notification",
  "source": "aws.ec2",
  "account": "111122223333",
  "time": "2017-10-02T18:43:48Z",
  "region": "us-west-1",
  "resources": [
    "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
    "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"
  ],
  "detail": {
    "instance-id": "i-1234567890abcdef0",
    "state": "running",
    "c-count": 5,
    "d-count": 7,
    "x-limit": 301.8,
    "source-ip": "10.0.0.123",
    "FileName": "image.PNG",
    "FilePath": "/usr/lib/libc.so",
    "service": "EventBridge",
    "EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default",
    "LastName": "",
    "responseElements": null,
    "Name": "Alice",
    "tags": ["a", "b"],
    "nested": {"k": "v"}
  }
}`

// The patterns of the EventBridge reference (comparison operators, content
// filtering, arrays), each against docEvent.
func TestMatch_DocumentationExamples(t *testing.T) {
	tests := []struct {
		name, pattern string
		want          bool
	}{
		{"and", `{"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["running"]}}`, true},
		{"and, one field differs", `{"source": ["aws.ec2"], "detail": {"state": ["terminated"]}}`, false},
		{"multiple values (or)", `{"source": ["aws.ec2", "aws.fargate"]}`, true},
		{"field missing", `{"detail": {"nope": ["x"]}}`, false},
		{"nesting must agree", `{"state": ["running"]}`, false},
		{"arrays intersect", `{"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f", "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f"]}`, true},
		{"arrays disjoint", `{"resources": ["arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]}`, false},
		{"prefix", `{"time": [{"prefix": "2017-10-02"}]}`, true},
		{"prefix no", `{"region": [{"prefix": "us-east"}]}`, false},
		{"prefix ignore case", `{"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}}`, true},
		{"suffix ignore case", `{"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}`, true},
		{"suffix is case sensitive", `{"detail": {"FileName": [{"suffix": ".png"}]}}`, false},
		{"anything-but string", `{"detail": {"state": [{"anything-but": "initializing"}]}}`, true},
		{"anything-but string excluded", `{"detail": {"state": [{"anything-but": "running"}]}}`, false},
		{"anything-but number", `{"detail": {"x-limit": [{"anything-but": 123}]}}`, true},
		{"anything-but list", `{"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}`, true},
		{"anything-but list excluded", `{"detail": {"state": [{"anything-but": ["stopped", "running"]}]}}`, false},
		{"anything-but numbers", `{"detail": {"c-count": [{"anything-but": [100, 200, 300]}]}}`, true},
		{"anything-but string against a number", `{"detail": {"c-count": [{"anything-but": "5"}]}}`, false},
		{"anything-but prefix", `{"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}`, true},
		{"anything-but prefix excluded", `{"region": [{"anything-but": {"prefix": "us-"}}]}`, false},
		{"anything-but suffix", `{"detail": {"FileName": [{"anything-but": {"suffix": ".txt"}}]}}`, true},
		{"anything-but ignore case", `{"detail": {"state": [{"anything-but": {"equals-ignore-case": "RUNNING"}}]}}`, false},
		{"anything-but ignore case list", `{"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "Overloaded"]}}]}}`, true},
		{"anything-but wildcard", `{"detail": {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}}`, false},
		{"anything-but on a missing field", `{"detail": {"nope": [{"anything-but": "x"}]}}`, false},
		{"numeric range", `{"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 3.018e2]}]}}`, true},
		{"numeric out of range", `{"detail": {"c-count": [{"numeric": [">", 5]}]}}`, false},
		{"numeric against a string", `{"detail": {"state": [{"numeric": [">", 0]}]}}`, false},
		{"exact number in another notation", `{"detail": {"x-limit": [3.018e2]}}`, true},
		{"cidr", `{"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}`, true},
		{"cidr outside", `{"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}`, false},
		{"exists", `{"detail": {"state": [{"exists": true}]}}`, true},
		{"exists on a missing field", `{"detail": {"nope": [{"exists": true}]}}`, false},
		{"exists false", `{"detail": {"nope": [{"exists": false}]}}`, true},
		{"exists false on a present field", `{"detail": {"state": [{"exists": false}]}}`, false},
		{"exists only on leaves", `{"detail": {"nested": [{"exists": true}]}}`, false},
		{"exists on a null value", `{"detail": {"responseElements": [{"exists": true}]}}`, true},
		{"null", `{"detail": {"responseElements": [null]}}`, true},
		{"empty string", `{"detail": {"LastName": [""]}}`, true},
		{"empty is not null", `{"detail": {"LastName": [null]}}`, false},
		{"equals-ignore-case", `{"detail": {"Name": [{"equals-ignore-case": "alice"}]}}`, true},
		{"equals is case sensitive", `{"detail": {"Name": ["alice"]}}`, false},
		{"wildcard", `{"detail": {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]}}`, true},
		{"wildcard no", `{"detail": {"EventBusArn": [{"wildcard": "arn:aws:events:eu-*:*"}]}}`, false},
		{"wildcard whole value", `{"detail": {"FileName": [{"wildcard": "image"}]}}`, false},
		{"array element matches an operator", `{"detail": {"tags": [{"prefix": "b"}]}}`, true},
		{"$or", `{"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"d-count": [{"numeric": ["<", 10]}]}]}}`, true},
		{"$or none", `{"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"state": ["stopped"]}]}}`, false},
		{"$or at the top", `{"source": ["aws.ec2"], "$or": [{"region": ["us-west-1"]}, {"account": ["999999999999"]}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.pattern))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Match([]byte(docEvent))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Match = %v, want %v\npattern %s", got, tt.want, tt.pattern)
			}
		})
	}
}

// tagChange is an EC2 "Tag Change on Resource" event as documented in
// https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging-eventbridge.html.
const tagChange = `{
  "version": "0", "id": "bddcf1d6-0251-35a1-aab0-adc1fb47c11c",
  "detail-type": "Tag Change on Resource", "source": "aws.tag",
  "account": "123456789012", "time": "2026-11-25T14:41:38Z", "region": "us-east-1",
  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"],
  "detail": {"changed-tag-keys": ["amirotate:rebuild", "Name"], "service": "ec2", "resource-type": "instance", "version": 3,
             "tags": {"amirotate:policy": "web", "amirotate:rebuild": "1", "Name": "web-1"}}
}`

// The shape of the rule pattern infra gives each policy (triggers.go).
func TestMatch_TagChangeRule(t *testing.T) {
	rule := func(tags string) string {
		return `{"source": ["aws.tag"], "detail-type": ["Tag Change on Resource"],
		  "detail": {"service": ["ec2"], "resource-type": ["instance"], "changed-tag-keys": ["amirotate:rebuild"], "tags": ` + tags + `}}`
	}
	tests := []struct {
		name, pattern, event string
		want                 bool
	}{
		{"selector value", rule(`{"amirotate:policy": ["web"]}`), tagChange, true},
		{"other policy", rule(`{"amirotate:policy": ["db"]}`), tagChange, false},
		{"selector any value", rule(`{"Name": [{"exists": true}]}`), tagChange, true},
		{"selector tag missing", rule(`{"Team": [{"exists": true}]}`), tagChange, false},
		{"another key changed", rule(`{"amirotate:policy": ["web"]}`), strings.Replace(tagChange, `"amirotate:rebuild", "Name"`, `"Name"`, 1), false},
		{"an image's tags", rule(`{"amirotate:policy": ["web"]}`), strings.Replace(tagChange, `"resource-type": "instance"`, `"resource-type": "image"`, 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MustParse(tt.pattern).Match([]byte(tt.event))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParse_RefusesWhatEventBridgeRefuses(t *testing.T) {
	for _, p := range []string{
		`[]`,
		`{"source": "aws.ec2"}`,
		`{"source": []}`,
		`{"source": [{"prefix": 1}]}`,
		`{"source": [{"nope": "x"}]}`,
		`{"n": [{"numeric": [">", "x"]}]}`,
		`{"n": [{"numeric": ["!=", 1]}]}`,
		`{"ip": [{"cidr": "10.0.0.0/99"}]}`,
		`{"s": [{"wildcard": "a**b"}]}`,
		`{"$or": [{"a": ["x"]}]}`,
		`{"s": [{"exists": "yes"}]}`,
		`{"s": [{"anything-but": {"numeric": [">", 1]}}]}`,
	} {
		if _, err := Parse([]byte(p)); err == nil {
			t.Errorf("Parse(%s) accepted it", p)
		}
	}
}
