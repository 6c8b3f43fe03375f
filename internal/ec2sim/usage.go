package ec2sim

import (
	"slices"
	"sort"
	"strconv"
	"time"
)

// Image usage reports: how other accounts use an image that is shared with
// them (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html).
// A report is made asynchronously (pending → available, or error), counts
// per account and resource type (ec2:Instance, ec2:LaunchTemplate) the
// resources that reference the image, and is deleted by EC2 30 days after
// it was made. As the guide warns, a report may miss instance activity of
// the last 24 hours and launch template activity of the last few days: the
// simulator leaves out instances younger than a day and launch templates
// younger than three days when the report is made.

const (
	usageReportLife      = 30 * 24 * time.Hour
	usageInstanceLag     = 24 * time.Hour
	usageLaunchTemplLag  = 3 * 24 * time.Hour
	resourceInstance     = "ec2:Instance"
	resourceLaunchTempl  = "ec2:LaunchTemplate"
	defaultTemplateDepth = 20
)

// consumerUse is a resource of another account that references an image.
type consumerUse struct {
	account, kind, id, imageID string
	created                    time.Time
}

type usageReport struct {
	seq          uint64
	id, imageID  string
	accounts     []string
	types        []string
	depth        int // launch template versions checked
	created      time.Time
	readyAt      time.Time
	failure      string        // set: the report ends in error
	stuck        bool          // never leaves pending
	entriesDelay time.Duration // entries listed only this long after readyAt
	entries      []usageEntry
	tags         map[string]string
}

type usageEntry struct {
	account, kind string
	count         int
}

func (rep *usageReport) state(now time.Time) string {
	switch {
	case rep.stuck || now.Before(rep.readyAt):
		return "pending"
	case rep.failure != "":
		return "error"
	}
	return "available"
}

// UsageReportBehaviour shapes the image usage reports made from now on in
// every region (the zero value: reports are available after the image
// delay, with their entries at once).
type UsageReportBehaviour struct {
	// Fail: reports end in error with this state reason.
	Fail string
	// Stuck: reports stay pending.
	Stuck bool
	// EntriesDelay: a report is available before its entries are listed.
	EntriesDelay time.Duration
	// Delay: how long a report stays pending (default the image delay).
	Delay time.Duration
}

// SetUsageReports sets how the next usage reports behave.
func (s *Sim) SetUsageReports(b UsageReportBehaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usageBehaviour = b
}

// ConsumerInstance launches, in another account, an instance of an image
// shared with it; ConsumerLaunchTemplate makes a launch template there that
// launches the image. Both fail as EC2 does when the account may not launch
// the image. They return the new resource's id.
func (s *Sim) ConsumerInstance(regionName, account, imageID string) (string, error) {
	return s.consumerUse(regionName, account, imageID, resourceInstance)
}

// ConsumerLaunchTemplate: see ConsumerInstance.
func (s *Sim) ConsumerLaunchTemplate(regionName, account, imageID string) (string, error) {
	return s.consumerUse(regionName, account, imageID, resourceLaunchTempl)
}

func (s *Sim) consumerUse(regionName, account, imageID, kind string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, apiErr := s.region(regionName)
	if apiErr != nil {
		return "", apiErr
	}
	img, ok := r.images[imageID]
	if !ok || !s.launchableBy(img, account) {
		// What RunInstances answers another account for an image it may not launch.
		return "", errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", imageID)
	}
	prefix := "i"
	if kind == resourceLaunchTempl {
		prefix = "lt"
	}
	id := s.newID(prefix)
	r.consumers = append(r.consumers, consumerUse{account: account, kind: kind, id: id, imageID: imageID, created: s.Now()})
	return id, nil
}

// RemoveConsumerUse ends a consumer's instance or launch template.
func (s *Sim) RemoveConsumerUse(regionName, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.regions[regionName]; ok {
		r.consumers = slices.DeleteFunc(r.consumers, func(u consumerUse) bool { return u.id == id })
	}
}

func (s *Sim) createImageUsageReport(c *call) *apiError {
	p := c.p
	id, err := p.required("ImageId")
	if err != nil {
		return err
	}
	var types []string
	depth := defaultTemplateDepth
	for _, n := range p.indexes("ResourceType") {
		m := member("ResourceType", n)
		t := p.str(m + "ResourceType")
		if t != resourceInstance && t != resourceLaunchTempl {
			return errInvalidValue("Value (%s) for parameter resourceType is invalid. Expected: 'ec2:Instance' or 'ec2:LaunchTemplate'.", t)
		}
		for _, o := range p.indexes(m + "ResourceTypeOption") {
			om := member(m+"ResourceTypeOption", o)
			if name := p.str(om + "OptionName"); name != "version-depth" || t != resourceLaunchTempl {
				return errInvalidValue("Value (%s) for parameter optionName is invalid. Expected: 'version-depth' for ec2:LaunchTemplate.", name)
			}
			v, convErr := strconv.Atoi(p.str(om + "OptionValue.1"))
			if convErr != nil || v < 1 || v > 10000 {
				return errInvalidValue("Value (%s) for parameter version-depth is invalid. Expected an integer between 1 and 10000.", p.str(om+"OptionValue.1"))
			}
			depth = v
		}
		types = append(types, t)
	}
	if len(types) == 0 {
		return errMissing("ResourceType")
	}
	accounts := p.list("AccountId")
	if len(accounts) > 200 {
		return errInvalidValue("The parameter AccountId accepts at most 200 values.")
	}
	specs, err := p.tagSpecs("image-usage-report")
	if err != nil {
		return err
	}
	tags, err := applyTags(nil, tagsFor(specs, "image-usage-report"))
	if err != nil {
		return err
	}
	img, err := c.r.ownImage(id, c.now)
	if err != nil {
		return err
	}
	if token := p.str("ClientToken"); token != "" {
		if prev, ok := c.r.usageTokens[token]; ok {
			if prev.imageID != id {
				return errorf("IdempotentParameterMismatch", "The client token %s has already been used with different parameters.", token)
			}
			c.w.el("reportId", prev.id)
			return nil
		}
	}
	b := s.usageBehaviour
	delay := b.Delay
	if delay == 0 {
		delay = s.opts.ImageDelay
	}
	rep := &usageReport{
		seq: s.nextSeq(), id: s.newID("amiur"), imageID: img.id, accounts: accounts, types: types, depth: depth,
		created: c.now, readyAt: c.now.Add(delay), failure: b.Fail, stuck: b.Stuck, entriesDelay: b.EntriesDelay, tags: tags,
	}
	// The counts are those of the moment the report is made, less what the
	// report's lag leaves out.
	counts := map[[2]string]int{}
	for _, u := range c.r.consumers {
		if u.imageID != img.id || !slices.Contains(types, u.kind) || len(accounts) > 0 && !slices.Contains(accounts, u.account) {
			continue
		}
		lag := usageInstanceLag
		if u.kind == resourceLaunchTempl {
			lag = usageLaunchTemplLag
		}
		if c.now.Sub(u.created) < lag {
			continue
		}
		counts[[2]string{u.account, u.kind}]++
	}
	for k, n := range counts {
		rep.entries = append(rep.entries, usageEntry{account: k[0], kind: k[1], count: n})
	}
	sort.Slice(rep.entries, func(i, j int) bool {
		a, b := rep.entries[i], rep.entries[j]
		return a.account < b.account || a.account == b.account && a.kind < b.kind
	})
	c.r.usageReports = append(c.r.usageReports, rep)
	if token := p.str("ClientToken"); token != "" {
		c.r.usageTokens[token] = rep
	}
	c.w.el("reportId", rep.id)
	return nil
}

// liveReports drops the reports EC2 has deleted (30 days old).
func (r *region) liveReports(now time.Time) []*usageReport {
	r.usageReports = slices.DeleteFunc(r.usageReports, func(rep *usageReport) bool {
		return !now.Before(rep.created.Add(usageReportLife))
	})
	return r.usageReports
}

func (s *Sim) describeImageUsageReports(c *call) *apiError {
	p := c.p
	fs, err := p.filters(set("state", "creation-time"), true)
	if err != nil {
		return err
	}
	limit, err := p.pageLimit(1, 1000, false)
	if err != nil {
		return err
	}
	ids, images := p.list("ReportId"), p.list("ImageId")
	match := func(rep *usageReport) bool {
		if len(ids) > 0 && !slices.Contains(ids, rep.id) || len(images) > 0 && !slices.Contains(images, rep.imageID) {
			return false
		}
		return matchFilters(fs, func(name string) []string {
			switch name {
			case "state":
				return []string{rep.state(c.now)}
			case "creation-time":
				return []string{fmtTime(rep.created)}
			}
			v, _ := tagFilterValues(rep.tags, name)
			return v
		})
	}
	page, next, err := paginate(c.r.liveReports(c.now), func(rep *usageReport) uint64 { return rep.seq }, match, "usagereports", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "imageUsageReportSet", page, func(rep *usageReport) {
		w.el("reportId", rep.id)
		w.el("imageId", rep.imageID)
		xmlList(w, "accountIdSet", rep.accounts, func(a string) { escapeInto(&w.b, a) })
		xmlList(w, "resourceTypeSet", rep.types, func(t string) {
			w.el("resourceType", t)
			if t == resourceLaunchTempl {
				xmlList(w, "resourceTypeOptionSet", []int{rep.depth}, func(d int) {
					w.el("optionName", "version-depth")
					xmlList(w, "optionValueSet", []string{strconv.Itoa(d)}, func(v string) { escapeInto(&w.b, v) })
				})
			}
		})
		state := rep.state(c.now)
		w.el("state", state)
		if state == "error" {
			w.el("stateReason", rep.failure)
		}
		w.el("creationTime", fmtTime(rep.created))
		w.el("expirationTime", fmtTime(rep.created.Add(usageReportLife)))
		w.tagSet("tagSet", rep.tags)
	})
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) describeImageUsageReportEntries(c *call) *apiError {
	p := c.p
	fs, err := p.filters(set("account-id", "resource-type", "creation-time"), false)
	if err != nil {
		return err
	}
	limit, err := p.pageLimit(1, 1000, false)
	if err != nil {
		return err
	}
	ids, images := p.list("ReportId"), p.list("ImageId")
	type row struct {
		rep *usageReport
		e   usageEntry
	}
	var rows []row
	for _, rep := range c.r.liveReports(c.now) {
		if len(ids) > 0 && !slices.Contains(ids, rep.id) || len(images) > 0 && !slices.Contains(images, rep.imageID) {
			continue
		}
		if rep.state(c.now) != "available" || c.now.Before(rep.readyAt.Add(rep.entriesDelay)) {
			continue
		}
		for _, e := range rep.entries {
			rows = append(rows, row{rep, e})
		}
	}
	match := func(rw row) bool {
		return matchFilters(fs, func(name string) []string {
			switch name {
			case "account-id":
				return []string{rw.e.account}
			case "resource-type":
				return []string{rw.e.kind}
			case "creation-time":
				return []string{fmtTime(rw.rep.created)}
			}
			return nil
		})
	}
	page, next, err := paginateList(rows, match, "usageentries", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "imageUsageReportEntrySet", page, func(rw row) {
		w.el("resourceType", rw.e.kind)
		w.el("reportId", rw.rep.id)
		w.el("usageCount", strconv.Itoa(rw.e.count))
		w.el("accountId", rw.e.account)
		w.el("imageId", rw.rep.imageID)
		w.el("reportCreationTime", fmtTime(rw.rep.created))
	})
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) deleteImageUsageReport(c *call) *apiError {
	id, err := c.p.required("ReportId")
	if err != nil {
		return err
	}
	n := len(c.r.usageReports)
	c.r.usageReports = slices.DeleteFunc(c.r.usageReports, func(rep *usageReport) bool { return rep.id == id })
	if len(c.r.usageReports) == n {
		return errorf("InvalidImageUsageReportId.NotFound", "The image usage report '%s' does not exist.", id)
	}
	c.w.boolean("return", true)
	return nil
}
