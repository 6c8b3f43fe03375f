package infra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"

	"github.com/amirotate/amirotate/internal/rotation"
)

// Config is the deployment file (deploy/policies.json): the policies with
// their schedules and the stack's settings. Unknown fields are an error.
type Config struct {
	// AlarmEmail is subscribed to the alarm topic (optional).
	AlarmEmail string `json:"alarmEmail,omitempty"`
	// LogRetentionDays of every log group; one of CloudWatch Logs' values
	// (1, 3, 5, 7, 14, 30, 60, 90, ...). Default 90.
	LogRetentionDays int `json:"logRetentionDays,omitempty"`
	// CopyKMSKeyArns: see RotationProps.CopyKMSKeyArns.
	CopyKMSKeyArns []string       `json:"copyKmsKeyArns,omitempty"`
	Policies       []ConfigPolicy `json:"policies"`
}

// ConfigPolicy is one policy (the product's policy JSON, decoded by the
// domain's strict decoder) and its schedule.
type ConfigPolicy struct {
	Schedule Schedule        `json:"schedule"`
	Policy   json.RawMessage `json:"policy"`
}

// retentionDays maps CloudWatch Logs' allowed retention periods to CDK's enum.
var retentionDays = map[int]awslogs.RetentionDays{
	1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
	60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
	150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
	400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
	1096: awslogs.RetentionDays_THREE_YEARS, 1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS,
	2557: awslogs.RetentionDays_SEVEN_YEARS, 2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS,
	3653: awslogs.RetentionDays_TEN_YEARS,
}

// LoadConfig reads and checks a deployment file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a deployment file strictly.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding: unexpected data after the top-level object")
	}
	return &c, nil
}

// Props turns the file into construct props (assetDir as RotationProps
// documents; the definition is the embedded one). Every policy is decoded with the domain's
// strict decoder, so the file accepts exactly what executions accept.
func (c *Config) Props(assetDir string) (*RotationProps, error) {
	props := &RotationProps{
		AlarmEmail:     c.AlarmEmail,
		CopyKMSKeyArns: c.CopyKMSKeyArns,
		AssetDir:       assetDir,
	}
	var errs []error
	if c.LogRetentionDays != 0 {
		rd, ok := retentionDays[c.LogRetentionDays]
		if !ok {
			errs = append(errs, fmt.Errorf("logRetentionDays: %d is not a CloudWatch Logs retention; use one of %s", c.LogRetentionDays, allowedRetention()))
		}
		props.LogRetention = rd
	}
	for i, cp := range c.Policies {
		if len(cp.Policy) == 0 {
			errs = append(errs, fmt.Errorf("policies[%d].policy: missing", i))
			continue
		}
		p, err := rotation.DecodePolicy(cp.Policy)
		if err != nil {
			errs = append(errs, fmt.Errorf("policies[%d]: %w", i, err))
			continue
		}
		props.Policies = append(props.Policies, PolicySchedule{Policy: p, Schedule: cp.Schedule})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return props, nil
}

func allowedRetention() string {
	days := make([]int, 0, len(retentionDays))
	for d := range retentionDays {
		days = append(days, d)
	}
	sort.Ints(days)
	s := make([]string, len(days))
	for i, d := range days {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, ", ")
}
