package ec2sim

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// DescribeInstanceStatus: the status checks of instances
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceStatus.html,
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-system-instance-status-check.html).
// A running instance's system and instance checks are initializing for
// Options.StatusCheckDelay after it became running, then ok; an instance
// launched from an image marked with ImpairImage fails the check named
// there (impaired, reachability failed). Only running instances are
// described unless IncludeAllInstances is true; the others' checks are
// not-applicable.

// Status checks ImpairImage can fail.
const (
	CheckInstance = "instance"
	CheckSystem   = "system"
)

// ImpairImage makes every instance launched from imageID (in region) fail
// its instance or system status check once its checks have initialized;
// check "" clears the mark.
func (s *Sim) ImpairImage(regionName, imageID, check string) error {
	switch check {
	case "", CheckInstance, CheckSystem:
	default:
		return fmt.Errorf("ec2sim: status check %q: want %q or %q", check, CheckInstance, CheckSystem)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, aerr := s.region(regionName)
	if aerr != nil {
		return aerr
	}
	if _, ok := r.images[imageID]; !ok {
		return fmt.Errorf("ec2sim: image %s does not exist in %s", imageID, regionName)
	}
	if check == "" {
		delete(r.impaired, imageID)
	} else {
		r.impaired[imageID] = check
	}
	return nil
}

var instanceStatusFilters = set("availability-zone", "instance-state-name", "instance-state-code",
	"system-status.status", "system-status.reachability", "instance-status.status", "instance-status.reachability")

// checkStatus is one check's summary status and its reachability detail.
type checkStatus struct {
	status, reachability string
	impairedSince        time.Time
}

// statusChecks evaluates the instance's system and instance checks at now.
func (s *Sim) statusChecks(r *region, in *instance, now time.Time) (system, instance checkStatus) {
	if in.state != "running" {
		na := checkStatus{status: "not-applicable"}
		return na, na
	}
	ready := in.runningSince.Add(s.opts.StatusCheckDelay)
	if now.Before(ready) {
		init := checkStatus{status: "initializing", reachability: "initializing"}
		return init, init
	}
	ok := checkStatus{status: "ok", reachability: "passed"}
	bad := checkStatus{status: "impaired", reachability: "failed", impairedSince: ready}
	switch r.impaired[in.imageID] {
	case CheckSystem:
		return bad, ok
	case CheckInstance:
		return ok, bad
	}
	return ok, ok
}

func (s *Sim) describeInstanceStatus(c *call) *apiError {
	p := c.p
	ids := p.list("InstanceId")
	if len(ids) > 0 && p.has("MaxResults") {
		return errorf("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	if len(ids) > 100 {
		return errInvalidValue("The maximum number of instance IDs in a request is 100")
	}
	limit, err := p.pageLimit(5, 1000, true)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 1000
	}
	all, err := p.boolean("IncludeAllInstances")
	if err != nil {
		return err
	}
	fs, err := p.filters(instanceStatusFilters, false)
	if err != nil {
		return err
	}
	items := c.r.instanceList
	if len(ids) > 0 {
		if items, err = c.r.instancesByID(ids, c.now); err != nil {
			return err
		}
		sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	}
	type row struct {
		in               *instance
		system, instance checkStatus
	}
	rows := map[*instance]row{}
	page, next, err := paginate(items, func(in *instance) uint64 { return in.seq }, func(in *instance) bool {
		in.refresh(c.now)
		if in.gone(c.now) || !all && in.state != "running" {
			return false
		}
		sys, ins := s.statusChecks(c.r, in, c.now)
		rows[in] = row{in, sys, ins}
		return matchFilters(fs, func(name string) []string {
			switch name {
			case "availability-zone":
				return []string{in.az}
			case "instance-state-name":
				return []string{in.state}
			case "instance-state-code":
				return []string{strconv.Itoa(instanceStateCodes[in.state])}
			case "system-status.status":
				return []string{sys.status}
			case "system-status.reachability":
				return []string{sys.reachability}
			case "instance-status.status":
				return []string{ins.status}
			case "instance-status.reachability":
				return []string{ins.reachability}
			}
			return nil
		})
	}, "instance-status", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	writeCheck := func(name string, cs checkStatus) {
		w.open(name)
		w.el("status", cs.status)
		if cs.reachability == "" {
			w.empty("details")
		} else {
			w.open("details")
			w.open("item")
			w.el("name", "reachability")
			w.el("status", cs.reachability)
			if !cs.impairedSince.IsZero() {
				w.el("impairedSince", fmtTime(cs.impairedSince))
			}
			w.close("item")
			w.close("details")
		}
		w.close(name)
	}
	xmlList(w, "instanceStatusSet", page, func(in *instance) {
		rw := rows[in]
		w.el("instanceId", in.id)
		w.el("availabilityZone", in.az)
		w.open("instanceState")
		w.integer("code", instanceStateCodes[in.state])
		w.el("name", in.state)
		w.close("instanceState")
		writeCheck("systemStatus", rw.system)
		writeCheck("instanceStatus", rw.instance)
	})
	w.opt("nextToken", next)
	return nil
}
