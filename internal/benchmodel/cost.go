package benchmodel

import (
	"math"
	"time"
)

// Prices are list prices in US East (N. Virginia), on demand, without free
// tiers, as the pricing pages listed them on Date:
//
//   - Step Functions Standard: $0.025 per 1,000 state transitions, retries
//     included (https://aws.amazon.com/step-functions/pricing/)
//   - Lambda on arm64: $0.0000133334 per GB-second (first tier), $0.20 per
//     million requests (https://aws.amazon.com/lambda/pricing/)
//   - EventBridge: $1.00 per million custom events published; Scheduler
//     $1.00 per million invocations (https://aws.amazon.com/eventbridge/pricing/)
//   - CloudWatch Logs: $0.50 per GB ingested, standard and vended logs
//     (https://aws.amazon.com/cloudwatch/pricing/)
//
// EC2 and SSM Parameter Store API calls (standard parameters, standard
// throughput) cost nothing, and X-Ray traces are left out.
type Prices struct {
	Date                string  `json:"date"`
	StateTransition     float64 `json:"step_functions_per_transition"`
	LambdaGBSecond      float64 `json:"lambda_arm64_per_gb_second"`
	LambdaRequest       float64 `json:"lambda_per_request"`
	EventBridgeEvent    float64 `json:"eventbridge_per_event"`
	SchedulerInvocation float64 `json:"scheduler_per_invocation"`
	LogsGB              float64 `json:"logs_per_gb"`
}

// ListPrices are the prices the benchmark bills at.
var ListPrices = Prices{
	Date:                "2026-11",
	StateTransition:     0.025 / 1000,
	LambdaGBSecond:      0.0000133334,
	LambdaRequest:       0.20 / 1e6,
	EventBridgeEvent:    1.00 / 1e6,
	SchedulerInvocation: 1.00 / 1e6,
	LogsGB:              0.50,
}

// Log volume the benchmark cannot measure locally: the state machine logs
// one event per history event at level ALL without execution data, and
// Lambda writes its START, END and REPORT lines per invocation.
const (
	StateMachineLogBytesPerEvent = 300
	LambdaPlatformLogBytes       = 600
)

// Usage is what one rotation consumes of the billed services.
type Usage struct {
	// Transitions billed: states entered, plus one per retry.
	Transitions int                  `json:"transitions"`
	Lambda      map[string]LambdaUse `json:"lambda"`
	Events      int                  `json:"eventbridge_events"`
	Schedules   int                  `json:"scheduler_invocations"`
	LogBytes    float64              `json:"log_bytes"`
}

// LambdaUse is one function's invocations and billed duration.
type LambdaUse struct {
	Invocations int     `json:"invocations"`
	Seconds     float64 `json:"seconds"`
	MemoryMB    float64 `json:"memory_mb"`
}

// Bill is a cost in US dollars, by service.
type Bill struct {
	StepFunctions  float64 `json:"step_functions"`
	LambdaRequests float64 `json:"lambda_requests"`
	LambdaDuration float64 `json:"lambda_duration"`
	EventBridge    float64 `json:"eventbridge"`
	Logs           float64 `json:"logs"`
	Total          float64 `json:"total"`
}

// Bill prices a usage.
func (p Prices) Bill(u Usage) Bill {
	b := Bill{
		StepFunctions: float64(u.Transitions) * p.StateTransition,
		EventBridge:   float64(u.Events)*p.EventBridgeEvent + float64(u.Schedules)*p.SchedulerInvocation,
		Logs:          u.LogBytes / (1 << 30) * p.LogsGB,
	}
	for _, l := range u.Lambda {
		b.LambdaRequests += float64(l.Invocations) * p.LambdaRequest
		b.LambdaDuration += l.Seconds * l.MemoryMB / 1024 * p.LambdaGBSecond
	}
	b.Total = b.StepFunctions + b.LambdaRequests + b.LambdaDuration + b.EventBridge + b.Logs
	return b
}

// Scale multiplies every line, e.g. by 1000/AMIs for the cost per 1,000 AMIs.
func (b Bill) Scale(f float64) Bill {
	return Bill{b.StepFunctions * f, b.LambdaRequests * f, b.LambdaDuration * f, b.EventBridge * f, b.Logs * f, b.Total * f}
}

// PerImageDesign is the common alternative, as AWS's Lambda samples build
// it: every image, source or copy, runs its own Standard execution; one
// waiter per image polls DescribeImages for that image alone; tags (on the
// image, then on its snapshots), deprecation and pruning are separate
// calls, each its own Task:
//
//	Start (CreateImage or CopyImage) → [Wait → Check → Available?]×polls →
//	TagImage → TagSnapshots → Deprecate → Prune → Done
//
// plus one invocation that starts the executions.
type PerImageDesign struct {
	// PollInterval is the waiter's delay: 15 s, the EC2 ImageAvailable
	// waiter's default.
	PollInterval time.Duration
	// InvocationSeconds is the billed time of one invocation making one or
	// two EC2 calls, at MemoryMB (the smallest Lambda size).
	InvocationSeconds float64
	MemoryMB          float64
}

// DefaultPerImageDesign is the design the benchmark compares with.
var DefaultPerImageDesign = PerImageDesign{PollInterval: 15 * time.Second, InvocationSeconds: 0.1, MemoryMB: 128}

// PerImageCost is what the per-image design spends on the same work.
type PerImageCost struct {
	Executions    int   `json:"executions"`
	HistoryEvents int   `json:"history_events_per_execution"`
	EC2Calls      int   `json:"ec2_calls"`
	Usage         Usage `json:"usage"`
}

// Usage models the per-image design doing w.
func (d PerImageDesign) Usage(w Work) PerImageCost {
	var c PerImageCost
	lambda := LambdaUse{MemoryMB: d.MemoryMB}
	execution := func(images int, delay time.Duration) {
		polls := int(math.Ceil(delay.Seconds() / d.PollInterval.Seconds()))
		tasks := 1 + polls + 4 // start, checks, tag image, tag snapshots, deprecate, prune
		transitions := tasks + 2*polls + 1
		// Per history: started and succeeded; a Task enters, is scheduled,
		// starts, succeeds and exits; a Wait and a Choice enter and exit.
		events := 2 + 5*tasks + 2*2*polls + 2
		c.HistoryEvents = max(c.HistoryEvents, events)
		calls := 1 + polls + 2 + 1 + 2 // create/copy, checks, 2 CreateTags, deprecation, describe + deregister
		c.Executions += images
		c.Usage.Transitions += images * transitions
		lambda.Invocations += images * tasks
		c.EC2Calls += images * calls
		c.Usage.LogBytes += float64(images*events) * StateMachineLogBytesPerEvent
	}
	execution(w.Instances, w.ImageDelay)
	execution(w.Instances*w.CopyRegions, w.CopyDelay)
	lambda.Invocations++ // the starter
	lambda.Seconds = float64(lambda.Invocations) * d.InvocationSeconds
	c.Usage.LogBytes += float64(lambda.Invocations) * LambdaPlatformLogBytes
	c.Usage.Lambda = map[string]LambdaUse{"per-image": lambda}
	c.Usage.Schedules = 1
	return c
}

// FunctionMemoryMB is each step's Lambda memory as the stack deploys it
// (infra's functionSpecs; a test in infra holds the two together).
var FunctionMemoryMB = map[string]float64{
	"discover": 256, "scripts": 256, "snapshot": 256, "poll": 256, "copy": 256,
	"verify": 256, "tag": 256, "publish": 256, "roll": 256, "retention": 512, "report": 128,
}
