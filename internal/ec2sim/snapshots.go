package ec2sim

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type snapshot struct {
	seq         uint64
	id          string
	volumeID    string
	description string
	ownerID     string
	ownerAlias  string
	size        int
	started     time.Time
	readyAt     time.Time
	state       string
	failed      bool // ends "error" instead of "completed"
	encrypted   bool
	kmsKeyID    string
	tags        map[string]string
	usedBy      map[string]bool // images whose block device mappings use it
	volumeUsers map[string]bool // createVolumePermission user ids
	public      bool            // createVolumePermission group all
}

func (sn *snapshot) refresh(now time.Time) {
	if sn.state == "pending" && !now.Before(sn.readyAt) {
		if sn.failed {
			sn.state = "error"
		} else {
			sn.state = "completed"
		}
	}
}

func (sn *snapshot) progress(now time.Time) string {
	switch sn.state {
	case "completed":
		return "100%"
	case "error":
		return "0%"
	}
	total := sn.readyAt.Sub(sn.started)
	if total <= 0 {
		return "99%"
	}
	pct := int(100 * now.Sub(sn.started) / total)
	return strconv.Itoa(max(0, min(99, pct))) + "%"
}

func (sn *snapshot) visibleTo(acct string) bool {
	return sn.ownerID == acct || sn.public || sn.volumeUsers[acct]
}

func (s *Sim) newSnapshotLocked(r *region, volumeID string, size int, encrypted bool, kmsKey string, now, ready time.Time, failed bool, desc string, tags map[string]string) *snapshot {
	sn := &snapshot{
		seq: s.nextSeq(), id: s.newID("snap"), volumeID: volumeID, description: desc, ownerID: AccountID,
		size: size, started: now, readyAt: ready, state: "pending", failed: failed,
		encrypted: encrypted, kmsKeyID: kmsKey, tags: map[string]string{}, usedBy: map[string]bool{},
		volumeUsers: map[string]bool{},
	}
	if encrypted && kmsKey == "" {
		sn.kmsKeyID = kmsArn(r.name, "")
	}
	for k, v := range tags {
		sn.tags[k] = v
	}
	sn.refresh(now)
	r.snapshots[sn.id] = sn
	r.snapshotList = append(r.snapshotList, sn)
	return sn
}

func (r *region) removeSnapshotLocked(sn *snapshot) {
	delete(r.snapshots, sn.id)
	r.snapshotList = removeSeq(r.snapshotList, func(x *snapshot) uint64 { return x.seq }, sn.seq)
}

func (r *region) snapshotByID(id string, now time.Time) (*snapshot, *apiError) {
	if !reSnapshotID.MatchString(id) {
		return nil, errorf("InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id)
	}
	sn, ok := r.snapshots[id]
	if !ok || !sn.visibleTo(AccountID) {
		return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	sn.refresh(now)
	return sn, nil
}

// ownSnapshot is snapshotByID for actions only the owner may take.
func (r *region) ownSnapshot(id string, now time.Time) (*snapshot, *apiError) {
	sn, err := r.snapshotByID(id, now)
	if err != nil {
		return nil, err
	}
	if sn.ownerID != AccountID {
		return nil, errorf("UnauthorizedOperation", "You are not authorized to perform this operation.")
	}
	return sn, nil
}

var snapshotFilters = set("status", "volume-id", "description", "owner-id", "owner-alias", "snapshot-id",
	"tag-key", "volume-size", "encrypted", "start-time", "progress", "kms-key-id", "storage-tier")

func (sn *snapshot) filterValues(name string) []string {
	if v, ok := tagFilterValues(sn.tags, name); ok {
		return v
	}
	switch name {
	case "status":
		return []string{sn.state}
	case "volume-id":
		return []string{sn.volumeID}
	case "description":
		return []string{sn.description}
	case "owner-id":
		return []string{sn.ownerID}
	case "owner-alias":
		return []string{sn.ownerAlias}
	case "snapshot-id":
		return []string{sn.id}
	case "volume-size":
		return []string{strconv.Itoa(sn.size)}
	case "encrypted":
		return []string{boolStr(sn.encrypted)}
	case "start-time":
		return []string{fmtTime(sn.started)}
	case "kms-key-id":
		return []string{sn.kmsKeyID}
	case "storage-tier":
		return []string{"standard"}
	}
	return nil
}

func (s *Sim) describeSnapshots(c *call) *apiError {
	p := c.p
	owners := p.list("Owner")
	for _, o := range owners {
		if !reOwner.MatchString(o) {
			return errorf("InvalidUserID.Malformed", "Invalid user id: \"%s\"", o)
		}
	}
	restorable := p.list("RestorableBy")
	for _, u := range restorable {
		if u != "self" && u != "all" && !reAccountID.MatchString(u) {
			return errorf("InvalidUserID.Malformed", "Invalid user id: \"%s\"", u)
		}
	}
	limit, err := p.pageLimit(5, 1000, false)
	if err != nil {
		return err
	}
	fs, err := p.filters(snapshotFilters, true)
	if err != nil {
		return err
	}
	items := c.r.snapshotList
	if ids := p.list("SnapshotId"); len(ids) > 0 {
		items = nil
		var missing []string
		seen := map[string]bool{}
		for _, id := range ids {
			if !reSnapshotID.MatchString(id) {
				return errorf("InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id)
			}
			sn, ok := c.r.snapshots[id]
			if !ok || !sn.visibleTo(AccountID) {
				missing = append(missing, id)
				continue
			}
			if !seen[id] {
				seen[id] = true
				items = append(items, sn)
			}
		}
		if len(missing) > 0 {
			return errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", strings.Join(missing, "', '"))
		}
		sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	}
	match := func(sn *snapshot) bool {
		sn.refresh(c.now)
		if !sn.visibleTo(AccountID) {
			return false
		}
		if len(owners) > 0 && !matchOwner(sn.ownerID, sn.ownerAlias, owners) {
			return false
		}
		if len(restorable) > 0 {
			ok := false
			for _, u := range restorable {
				ok = ok || sn.public || u == "self" && sn.visibleTo(AccountID) || sn.volumeUsers[u]
			}
			if !ok {
				return false
			}
		}
		return matchFilters(fs, sn.filterValues)
	}
	page, next, err := paginate(items, func(sn *snapshot) uint64 { return sn.seq }, match, "snapshots", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "snapshotSet", page, func(sn *snapshot) {
		w.el("snapshotId", sn.id)
		w.el("volumeId", sn.volumeID)
		w.el("status", sn.state)
		if sn.state == "error" {
			w.el("statusMessage", "The snapshot could not be completed because its image failed.")
		}
		w.el("startTime", fmtTime(sn.started))
		w.el("progress", sn.progress(c.now))
		w.el("ownerId", sn.ownerID)
		w.opt("ownerAlias", sn.ownerAlias)
		w.el("description", sn.description)
		w.integer("volumeSize", sn.size)
		w.tagSet("tagSet", sn.tags)
		w.boolean("encrypted", sn.encrypted)
		w.opt("kmsKeyId", sn.kmsKeyID)
		w.el("storageTier", "standard")
		if sn.state == "completed" {
			w.el("completionTime", fmtTime(sn.readyAt))
		}
	})
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) deleteSnapshot(c *call) *apiError {
	id, err := c.p.required("SnapshotId")
	if err != nil {
		return err
	}
	sn, err := c.r.ownSnapshot(id, c.now)
	if err != nil {
		return err
	}
	if len(sn.usedBy) > 0 {
		return errorf("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, slices.Sorted(maps.Keys(sn.usedBy))[0])
	}
	c.r.removeSnapshotLocked(sn)
	c.w.boolean("return", true)
	return nil
}

func (s *Sim) modifySnapshotAttribute(c *call) *apiError {
	p := c.p
	id, err := p.required("SnapshotId")
	if err != nil {
		return err
	}
	sn, err := c.r.ownSnapshot(id, c.now)
	if err != nil {
		return err
	}
	if attr := p.str("Attribute"); attr != "" && attr != "createVolumePermission" {
		return errInvalidValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	add, remove, err := permissionChanges(p, "CreateVolumePermission")
	if err != nil {
		if err.Code == "InvalidAMIAttributeItemValue" {
			err = errInvalidValue("%s", err.Message)
		}
		return err
	}
	if len(add)+len(remove) == 0 {
		return errMissing("CreateVolumePermission")
	}
	if sn.encrypted && slices.Contains(add, "group:all") {
		return errorf("InvalidParameter", "Encrypted snapshots with EBS default key cannot be shared")
	}
	applyPermissions(&sn.public, sn.volumeUsers, add, remove)
	c.w.boolean("return", true)
	return nil
}

func (s *Sim) describeSnapshotAttribute(c *call) *apiError {
	p := c.p
	id, err := p.required("SnapshotId")
	if err != nil {
		return err
	}
	attr, err := p.required("Attribute")
	if err != nil {
		return err
	}
	sn, err := c.r.snapshotByID(id, c.now)
	if err != nil {
		return err
	}
	w := c.w
	w.el("snapshotId", id)
	switch attr {
	case "createVolumePermission":
		writePermissions(w, "createVolumePermission", sn.public, sn.volumeUsers)
	case "productCodes":
		w.empty("productCodes")
	default:
		return errInvalidValue("Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return nil
}
