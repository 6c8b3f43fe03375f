// Package ec2sim is a local Amazon EC2 endpoint (plus SSM Parameter Store
// and a minimal Auto Scaling) that the unmodified AWS SDKs and CLIs accept.
//
// A *Sim is an http.Handler. It speaks the EC2 Query protocol (form POST or
// GET, Version 2016-11-15, XML responses, EC2's XML error envelope), SSM's
// JSON 1.1 protocol and the Auto Scaling query protocol, all at one address,
// and serves every configured region: the region is read from the SigV4
// credential scope of the Authorization header; any credentials are
// accepted, and with an Authorizer (authz.go) the calls of known identities
// are authorized as AWS authorizes them. Admin endpoints live under /_sim/ (see admin.go).
//
//	sim := ec2sim.New(ec2sim.Options{Regions: []string{"us-east-1", "eu-west-1"}})
//	srv := httptest.NewServer(sim)
//	cfg := ec2sim.AWSConfig(srv.URL, "us-east-1")
//	client := ec2.NewFromConfig(cfg)
//
// Time comes from a Clock (the wall clock by default, a *ManualClock in
// tests). Images go pending → available (or failed) and snapshots pending →
// completed when the clock passes their ready time; this is evaluated on
// every read, so no goroutine runs in the background.
//
// Everything the simulator owns belongs to account AccountID
// (123456789012); the Amazon base images belong to AmazonOwnerID.
package ec2sim

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// AccountID owns every resource created through the simulator.
	AccountID = "123456789012"
	// AmazonOwnerID owns the public base images (owner alias "amazon").
	AmazonOwnerID = "137112412989"
)

// DefaultRegions are served when Options.Regions is empty.
var DefaultRegions = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}

// Options configure a simulator. Zero values select the defaults given.
type Options struct {
	// Regions served; the first one also answers requests that carry no
	// SigV4 credential scope. Default DefaultRegions.
	Regions []string
	// Clock drives every timed transition. Default: the wall clock.
	Clock Clock
	// ImageDelay is how long CreateImage keeps an 8 GiB image pending; each
	// further 100 GiB of volumes adds another ImageDelay. Default 3s;
	// negative means images are available at once.
	ImageDelay time.Duration
	// CopyDelay is the same for CopyImage. Default 2 × ImageDelay;
	// negative means at once.
	CopyDelay time.Duration
	// InstanceDelay is how long instances stay pending, stopping or
	// shutting-down. Default 0: transitions are immediate.
	InstanceDelay time.Duration
	// RefreshDelay is how long an Auto Scaling instance refresh stays
	// Pending. Default 30s; negative means it starts at once.
	RefreshDelay time.Duration
	// MaxConcurrentCopies is the number of pending CopyImage results a
	// destination region accepts before answering ResourceLimitExceeded.
	// Default 100 (the older documented limit; the current docs say 300).
	MaxConcurrentCopies int
	// StatusCheckDelay is how long a running instance's status checks stay
	// initializing before they pass (or fail: ImpairImage). Default 3s;
	// negative means at once. Instances seeded with RunInstance pass at once.
	StatusCheckDelay time.Duration
	// InvocationDelay is how long a Run Command invocation takes to
	// register (GetCommandInvocation answers InvocationDoesNotExist until
	// then). Default 1s; negative means at once.
	InvocationDelay time.Duration
	// CommandDelay is how long a command runs on an instance when no
	// CommandScript says otherwise. Default 1s; negative means at once.
	CommandDelay time.Duration
	// Throttling switches EC2-style request throttling on from the start.
	Throttling bool
	// Seed makes generated ids and fault probabilities reproducible.
	// 0 picks a random seed.
	Seed uint64
}

// Sim is the simulator. Create it with New; it is safe for concurrent use.
type Sim struct {
	mu          sync.Mutex
	opts        Options
	clock       Clock
	regionNames []string
	regions     map[string]*region
	rng         *rand.Rand
	seq         uint64

	throttling  bool
	authz       Authorizer
	onTagChange func(TagChange)
	// members: account → its organization and OUs (JoinOrganization).
	members map[string][]string
	// kmsKeys: customer managed keys by ARN (CreateKMSKey).
	kmsKeys map[string]*kmsKey
	// usageBehaviour shapes new image usage reports (SetUsageReports).
	usageBehaviour UsageReportBehaviour
	faults         []*faultRule
	scripts        []CommandScript
	calls          map[string]map[string]int
	retried        map[string]map[string]int
	throttled      int
	faulted        int
}

// region holds everything of one region. Lists are kept in creation order
// (by seq) for stable pagination; maps index them by id.
type region struct {
	name string

	instances    map[string]*instance
	instanceList []*instance
	volumes      map[string]*volume

	images      map[string]*image
	imageList   []*image
	imageNames  map[string]*image
	copyTokens  map[string]copyToken
	pendingCopy map[string]*image

	snapshots    map[string]*snapshot
	snapshotList []*snapshot

	templates      map[string]*launchTemplate
	templateNames  map[string]*launchTemplate
	templateList   []*launchTemplate
	templateTokens map[string]string

	params map[string]*parameter

	documents  map[string]*Document
	commands   []*command
	commandIDs map[string]*command
	impaired   map[string]string // image id → the status check its instances fail

	asgs          map[string]*autoScalingGroup
	launchConfigs map[string]*launchConfiguration
	// refreshes: group → its instance refreshes, newest first.
	refreshes      map[string][]*instanceRefresh
	refreshScripts map[string]refreshScript

	buckets map[string]*bucket

	consumers    []consumerUse // other accounts' resources using our images
	usageReports []*usageReport
	usageTokens  map[string]*usageReport
}

// New returns a simulator with the Amazon base images seeded in every region.
func New(opts Options) *Sim {
	if len(opts.Regions) == 0 {
		opts.Regions = DefaultRegions
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.ImageDelay == 0 {
		opts.ImageDelay = 3 * time.Second
	}
	if opts.ImageDelay < 0 {
		opts.ImageDelay = 0
	}
	if opts.CopyDelay == 0 {
		opts.CopyDelay = 2 * opts.ImageDelay
	}
	if opts.CopyDelay < 0 {
		opts.CopyDelay = 0
	}
	if opts.RefreshDelay == 0 {
		opts.RefreshDelay = 30 * time.Second
	}
	if opts.RefreshDelay < 0 {
		opts.RefreshDelay = 0
	}
	if opts.InstanceDelay < 0 {
		opts.InstanceDelay = 0
	}
	for _, d := range []*time.Duration{&opts.StatusCheckDelay, &opts.InvocationDelay, &opts.CommandDelay} {
		def := time.Second
		if d == &opts.StatusCheckDelay {
			def = 3 * time.Second
		}
		if *d == 0 {
			*d = def
		}
		if *d < 0 {
			*d = 0
		}
	}
	if opts.MaxConcurrentCopies <= 0 {
		opts.MaxConcurrentCopies = 100
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Sim{opts: opts, clock: opts.Clock, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	s.regionNames = append([]string(nil), opts.Regions...)
	s.resetLocked()
	s.throttling = opts.Throttling
	return s
}

// resetLocked drops all state and re-seeds the base images. Faults,
// throttling and counters are cleared too.
func (s *Sim) resetLocked() {
	s.regions = make(map[string]*region, len(s.regionNames))
	for _, name := range s.regionNames {
		s.regions[name] = newRegion(name)
	}
	s.faults = nil
	s.scripts = nil
	s.calls = map[string]map[string]int{}
	s.retried = nil
	s.throttled = 0
	s.faulted = 0
	s.throttling = false
	for _, name := range s.regionNames {
		s.seedBaseImages(s.regions[name])
	}
}

func newRegion(name string) *region {
	return &region{
		name:           name,
		instances:      map[string]*instance{},
		volumes:        map[string]*volume{},
		images:         map[string]*image{},
		imageNames:     map[string]*image{},
		copyTokens:     map[string]copyToken{},
		pendingCopy:    map[string]*image{},
		snapshots:      map[string]*snapshot{},
		templates:      map[string]*launchTemplate{},
		templateNames:  map[string]*launchTemplate{},
		templateTokens: map[string]string{},
		params:         map[string]*parameter{},
		documents:      amazonDocuments(),
		commandIDs:     map[string]*command{},
		impaired:       map[string]string{},
		asgs:           map[string]*autoScalingGroup{},
		launchConfigs:  map[string]*launchConfiguration{},
		buckets:        map[string]*bucket{},
		usageTokens:    map[string]*usageReport{},
	}
}

// Reset drops every resource, fault rule and counter and switches
// throttling off, as POST /_sim/reset does.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// Regions returns the regions served, in configuration order.
func (s *Sim) Regions() []string { return append([]string(nil), s.regionNames...) }

// Now is the simulator's current time.
func (s *Sim) Now() time.Time { return s.clock.Now().UTC() }

// Clock returns the simulator's clock.
func (s *Sim) Clock() Clock { return s.clock }

// Advance moves a manual clock forward; with any other clock it does nothing
// and returns false.
func (s *Sim) Advance(d time.Duration) bool {
	if mc, ok := s.clock.(*ManualClock); ok {
		mc.Advance(d)
		return true
	}
	return false
}

func (s *Sim) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// newID returns prefix + "-" + 17 lowercase hex digits.
func (s *Sim) newID(prefix string) string {
	var b [9]byte
	a, c := s.rng.Uint64(), s.rng.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
	}
	b[8] = byte(c)
	return prefix + "-" + hex.EncodeToString(b[:])[:17]
}

func (s *Sim) requestID() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a), uint16(a>>32), uint16(a>>48)&0xfff, uint16(b)&0x3fff|0x8000, b>>16&0xffffffffffff)
}

func (s *Sim) region(name string) (*region, *apiError) {
	if r, ok := s.regions[name]; ok {
		return r, nil
	}
	return nil, errorf("InvalidRegion", "The region '%s' is not served by this endpoint; it serves %s", name, strings.Join(s.regionNames, ", "))
}

// ServeHTTP dispatches to the admin endpoints, SSM (X-Amz-Target
// AmazonSSM.*), Auto Scaling (SigV4 service "autoscaling" or Version
// 2011-01-01) or EC2. It never panics: a failure inside an action answers
// 500 InternalError.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if rec := recover(); rec != nil {
			msg := fmt.Sprintf("internal error: %v", rec)
			if testingStacks {
				msg += "\n" + string(debug.Stack())
			}
			writeEC2Error(w, errInternal("%s", msg), "")
		}
	}()
	if strings.HasPrefix(r.URL.Path, "/_sim/") || r.URL.Path == "/_sim" {
		s.serveAdmin(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<20)
	svc, regionName := credentialScope(r)
	if regionName == "" {
		regionName = s.regionNames[0]
	}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "TrentService.") || svc == "kms" {
		s.serveKMS(w, r, regionName)
		return
	}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.") || svc == "ssm" {
		s.serveSSM(w, r, regionName)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeEC2Error(w, errorf("MalformedQueryString", "The request could not be parsed: %v", err), s.lockedRequestID())
		return
	}
	p := params(r.Form)
	if svc == "autoscaling" || p.str("Version") == "2011-01-01" {
		s.serveAutoScaling(w, r, regionName, p)
		return
	}
	s.serveEC2(w, r, regionName, p)
}

// testingStacks adds stack traces to InternalError messages under test.
var testingStacks = false

func (s *Sim) lockedRequestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requestID()
}

// credentialScope reads service and region from the SigV4 Authorization
// header (Credential=AKID/date/region/service/aws4_request) or from a
// presigned URL's X-Amz-Credential.
func credentialScope(r *http.Request) (service, region string) {
	cred := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		if i := strings.Index(auth, "Credential="); i >= 0 {
			cred = auth[i+len("Credential="):]
			if j := strings.IndexAny(cred, ", "); j >= 0 {
				cred = cred[:j]
			}
		}
	} else {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	parts := strings.Split(cred, "/")
	if len(parts) >= 5 {
		return parts[3], parts[2]
	}
	return "", ""
}

// call is one EC2 or Auto Scaling request being served.
type call struct {
	r   *region
	p   params
	w   *xw
	now time.Time
}

// queryHandler serves an action of a query protocol (EC2, Auto Scaling).
type queryHandler func(s *Sim, c *call) *apiError

// ec2Actions are the EC2 actions the simulator implements.
var ec2Actions = map[string]queryHandler{
	"DescribeRegions":                      (*Sim).describeRegions,
	"DescribeAvailabilityZones":            (*Sim).describeAvailabilityZones,
	"DescribeAccountAttributes":            (*Sim).describeAccountAttributes,
	"RunInstances":                         (*Sim).runInstances,
	"DescribeInstances":                    (*Sim).describeInstances,
	"DescribeInstanceStatus":               (*Sim).describeInstanceStatus,
	"StartInstances":                       (*Sim).startInstances,
	"StopInstances":                        (*Sim).stopInstances,
	"TerminateInstances":                   (*Sim).terminateInstances,
	"CreateImage":                          (*Sim).createImage,
	"DescribeImages":                       (*Sim).describeImages,
	"CopyImage":                            (*Sim).copyImage,
	"RegisterImage":                        (*Sim).registerImage,
	"DeregisterImage":                      (*Sim).deregisterImage,
	"EnableImageDeprecation":               (*Sim).enableImageDeprecation,
	"DisableImageDeprecation":              (*Sim).disableImageDeprecation,
	"EnableImageDeregistrationProtection":  (*Sim).enableImageDeregistrationProtection,
	"DisableImageDeregistrationProtection": (*Sim).disableImageDeregistrationProtection,
	"EnableImage":                          (*Sim).enableImage,
	"DisableImage":                         (*Sim).disableImage,
	"ModifyImageAttribute":                 (*Sim).modifyImageAttribute,
	"DescribeImageAttribute":               (*Sim).describeImageAttribute,
	"CreateImageUsageReport":               (*Sim).createImageUsageReport,
	"DescribeImageUsageReports":            (*Sim).describeImageUsageReports,
	"DescribeImageUsageReportEntries":      (*Sim).describeImageUsageReportEntries,
	"DeleteImageUsageReport":               (*Sim).deleteImageUsageReport,
	"DescribeSnapshots":                    (*Sim).describeSnapshots,
	"DescribeVolumes":                      (*Sim).describeVolumes,
	"DeleteSnapshot":                       (*Sim).deleteSnapshot,
	"ModifySnapshotAttribute":              (*Sim).modifySnapshotAttribute,
	"DescribeSnapshotAttribute":            (*Sim).describeSnapshotAttribute,
	"CreateTags":                           (*Sim).createTags,
	"DeleteTags":                           (*Sim).deleteTags,
	"DescribeTags":                         (*Sim).describeTags,
	"DescribeImageReferences":              (*Sim).describeImageReferences,
	"CreateLaunchTemplate":                 (*Sim).createLaunchTemplate,
	"DescribeLaunchTemplates":              (*Sim).describeLaunchTemplates,
	"DescribeLaunchTemplateVersions":       (*Sim).describeLaunchTemplateVersions,
	"CreateLaunchTemplateVersion":          (*Sim).createLaunchTemplateVersion,
	"ModifyLaunchTemplate":                 (*Sim).modifyLaunchTemplate,
	"DeleteLaunchTemplate":                 (*Sim).deleteLaunchTemplate,
}

// Actions returns the EC2 actions the simulator implements, sorted.
func Actions() []string {
	return slices.Sorted(maps.Keys(ec2Actions))
}

func (s *Sim) serveEC2(w http.ResponseWriter, r *http.Request, regionName string, p params) {
	action := p.str("Action")
	h, ok := ec2Actions[action]
	if !ok {
		id := s.countUnknown(regionName, action)
		if action == "" {
			writeEC2Error(w, errMissing("Action"), id)
			return
		}
		writeEC2Error(w, errorf("InvalidAction", "The action %s is not valid for this web service.", action), id)
		return
	}
	c := &call{p: p, w: &xw{}}
	az := &authzCall{build: func(reg *region) []AuthzRequest { return s.ec2AuthzRequests(reg, action, p) }, denied: ec2Denied}
	id, err := s.serve(r, regionName, action, func() []bucketCost { return ec2Buckets(action, p) }, az, func(reg *region, now time.Time) *apiError {
		if dry, err := p.boolean("DryRun"); err != nil {
			return err
		} else if dry {
			return errDryRun()
		}
		c.r, c.now = reg, now
		return h(s, c)
	})
	if err != nil {
		writeEC2Error(w, err, id)
		return
	}
	var b strings.Builder
	b.Grow(c.w.b.Len() + 256)
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<")
	b.WriteString(action)
	b.WriteString(`Response xmlns="` + ec2Namespace + `"><requestId>`)
	b.WriteString(id)
	b.WriteString("</requestId>")
	b.WriteString(c.w.b.String())
	b.WriteString("</")
	b.WriteString(action)
	b.WriteString("Response>")
	h2 := w.Header()
	h2.Set("Content-Type", "text/xml;charset=UTF-8")
	h2.Set("X-Amzn-Requestid", id)
	h2.Set("Server", "AmazonEC2")
	h2.Set("Cache-Control", "no-cache, no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}

// writeEC2Error writes EC2's error envelope:
// <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>.
func writeEC2Error(w http.ResponseWriter, e *apiError, requestID string) {
	var x xw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.open("Response")
	x.open("Errors")
	x.open("Error")
	x.el("Code", e.Code)
	x.el("Message", e.Message)
	x.close("Error")
	x.close("Errors")
	x.el("RequestID", requestID)
	x.close("Response")
	h := w.Header()
	h.Set("Content-Type", "text/xml;charset=UTF-8")
	h.Set("X-Amzn-Requestid", requestID)
	h.Set("Server", "AmazonEC2")
	status := e.Status
	if status == 0 {
		status = StatusForCode(e.Code)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(x.b.String()))
}

// countUnknown counts a call of an action the simulator does not implement
// and returns the request id to answer it with.
func (s *Sim) countUnknown(regionName, statsKey string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = countIn(s.calls, regionName, statsKey)
	return s.requestID()
}

// serve runs one call of an implemented action (statsKey is the action as
// counted and matched by faults: "ssm:PutParameter" for other services). The
// call is admitted (counted, then a matching fault and throttling applied,
// buckets nil for no throttling), authorized (az; see authz.go) and then
// handle runs under the lock with the region named. It returns the request
// id and the error to answer, if any.
func (s *Sim) serve(req *http.Request, regionName, statsKey string, buckets func() []bucketCost, az *authzCall, handle func(r *region, now time.Time) *apiError) (string, *apiError) {
	if err := s.admit(req.Context(), regionName, statsKey, isRetry(req), buckets); err != nil {
		return s.lockedRequestID(), err
	}
	if err := s.authorize(req, regionName, az); err != nil {
		return s.lockedRequestID(), err
	}
	s.mu.Lock()
	defer s.mu.Unlock() // also when handle panics: ServeHTTP recovers, and later calls must not hang
	id := s.requestID()
	reg, err := s.region(regionName)
	if err != nil {
		return id, err
	}
	return id, handle(reg, s.Now())
}

// admit does the bookkeeping every call goes through before it is served:
// count it, apply a matching fault (error and/or latency), then throttling.
func (s *Sim) admit(ctx context.Context, regionName, statsKey string, retry bool, buckets func() []bucketCost) *apiError {
	s.mu.Lock()
	s.calls = countIn(s.calls, regionName, statsKey)
	if retry {
		s.retried = countIn(s.retried, regionName, statsKey)
	}
	f := s.matchFaultLocked(regionName, statsKey)
	var ferr *apiError
	var latency time.Duration
	if f != nil {
		latency = f.Latency
		if f.Code != "" && !f.FailImage {
			ferr = f.apiError()
			s.faulted++
		}
	}
	var terr *apiError
	if ferr == nil && s.throttling && buckets != nil {
		if reg, ok := s.regions[regionName]; ok && !s.takeTokensLocked(reg, buckets()) {
			s.throttled++
			terr = errThrottled()
		}
	}
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if ferr != nil {
		return ferr
	}
	return terr
}

// countIn adds one call of action in region to counts.
func countIn(counts map[string]map[string]int, regionName, action string) map[string]map[string]int {
	if counts == nil {
		counts = map[string]map[string]int{}
	}
	if counts[regionName] == nil {
		counts[regionName] = map[string]int{}
	}
	counts[regionName][action]++
	return counts
}

// isRetry tells a client's retry of a call: the AWS SDKs and CLIs number
// their attempts in the amz-sdk-request header ("attempt=2; max=10").
func isRetry(r *http.Request) bool {
	h := r.Header.Get("Amz-Sdk-Request")
	return h != "" && !strings.HasPrefix(h, "attempt=1;") && h != "attempt=1"
}

// Stats are the simulator's counters: calls per region and action (SSM and
// Auto Scaling actions are prefixed "ssm:" and "autoscaling:"), calls
// answered RequestLimitExceeded by throttling, and calls answered with an
// injected fault.
type Stats struct {
	Calls map[string]map[string]int `json:"calls"`
	// Retried: those of Calls that the client sent as a retry of an earlier attempt.
	Retried   map[string]map[string]int `json:"retried,omitempty"`
	Throttled int                       `json:"throttled"`
	Faulted   int                       `json:"faulted"`
}

// Total is the number of calls of an action over all regions ("" = all actions).
func (st Stats) Total(action string) int {
	n := 0
	for _, m := range st.Calls {
		for a, c := range m {
			if action == "" || a == action {
				n += c
			}
		}
	}
	return n
}

// FirstAttempts is st without the clients' retries of a call (a transport
// hiccup on a loaded machine, a throttled attempt): the calls the caller's
// own code made, which is what a test of "one call per region" counts.
func (st Stats) FirstAttempts() Stats {
	calls := copyCounts(st.Calls)
	for r, m := range st.Retried {
		for a, n := range m {
			calls[r][a] -= n
			if calls[r][a] == 0 {
				delete(calls[r], a)
			}
		}
		if len(calls[r]) == 0 {
			delete(calls, r)
		}
	}
	return Stats{Calls: calls, Throttled: st.Throttled, Faulted: st.Faulted}
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Calls: copyCounts(s.calls), Retried: copyCounts(s.retried), Throttled: s.throttled, Faulted: s.faulted}
}

func copyCounts(counts map[string]map[string]int) map[string]map[string]int {
	out := make(map[string]map[string]int, len(counts))
	for r, m := range counts {
		out[r] = maps.Clone(m)
	}
	return out
}

// ResetStats zeroes the counters and keeps everything else.
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]map[string]int{}
	s.retried = nil
	s.throttled = 0
	s.faulted = 0
}

// SetThrottling switches EC2-style request throttling on or off. Switching
// it on starts every bucket full.
func (s *Sim) SetThrottling(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && !s.throttling {
		for _, r := range s.regions {
			r.buckets = map[string]*bucket{}
		}
	}
	s.throttling = on
}

// Throttling reports whether throttling is on.
func (s *Sim) Throttling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttling
}
