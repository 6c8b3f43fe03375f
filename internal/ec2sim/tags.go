package ec2sim

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// taggable finds the tag map of a resource by id, with the NotFound error
// EC2 answers for its kind.
func (r *region) taggable(id string, now time.Time) (*map[string]string, *apiError) {
	switch {
	case strings.HasPrefix(id, "ami-"):
		img, err := r.ownImage(id, now)
		if err != nil {
			if err.Code == "AuthFailure" {
				err = errorf("UnauthorizedOperation", "You are not authorized to perform this operation.")
			}
			return nil, err
		}
		return &img.tags, nil
	case strings.HasPrefix(id, "snap-"):
		sn, err := r.ownSnapshot(id, now)
		if err != nil {
			return nil, err
		}
		return &sn.tags, nil
	case strings.HasPrefix(id, "i-"):
		in, err := r.instanceByID(id, now)
		if err != nil {
			return nil, err
		}
		return &in.tags, nil
	case strings.HasPrefix(id, "vol-"):
		if !reVolumeID.MatchString(id) {
			return nil, errorf("InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", id)
		}
		v, ok := r.volumes[id]
		if !ok {
			return nil, errorf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
		return &v.tags, nil
	case strings.HasPrefix(id, "lt-"):
		lt, err := r.templateByRef(id, "")
		if err != nil {
			return nil, err
		}
		return &lt.tags, nil
	}
	return nil, errorf("InvalidID", "The ID '%s' is not valid", id)
}

func (s *Sim) createTags(c *call) *apiError {
	ids := c.p.list("ResourceId")
	if len(ids) == 0 {
		return errMissing("ResourceId")
	}
	if len(ids) > 1000 {
		return errInvalidValue("Too many resource IDs (%d); the maximum is 1000.", len(ids))
	}
	tags, err := c.p.tags("Tag")
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return errMissing("Tag")
	}
	// Validate every resource first: the call applies to all or none.
	maps := make([]*map[string]string, 0, len(ids))
	for _, id := range ids {
		m, err := c.r.taggable(id, c.now)
		if err != nil {
			return err
		}
		probe := make(map[string]string, len(*m))
		for k, v := range *m {
			probe[k] = v
		}
		if _, err := applyTags(probe, tags); err != nil {
			return err
		}
		maps = append(maps, m)
	}
	for i, m := range maps {
		before := cloneTags(*m)
		*m, _ = applyTags(*m, tags)
		s.noteTagChange(c, ids[i], before, *m)
	}
	c.w.boolean("return", true)
	return nil
}

func (s *Sim) deleteTags(c *call) *apiError {
	ids := c.p.list("ResourceId")
	if len(ids) == 0 {
		return errMissing("ResourceId")
	}
	type del struct {
		key      string
		value    string
		hasValue bool
	}
	var dels []del
	for _, n := range c.p.indexes("Tag") {
		pre := member("Tag", n)
		k := c.p.str(pre + "Key")
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return errInvalidValue("Tag keys starting with 'aws:' are reserved for internal use")
		}
		if k == "" {
			return errorf("InvalidTagKey.Malformed", "Tag keys cannot be empty or null, and cannot start with aws:")
		}
		dels = append(dels, del{key: k, value: c.p.str(pre + "Value"), hasValue: c.p.has(pre + "Value")})
	}
	maps := make([]*map[string]string, 0, len(ids))
	for _, id := range ids {
		m, err := c.r.taggable(id, c.now)
		if err != nil {
			return err
		}
		maps = append(maps, m)
	}
	for i, m := range maps {
		before := cloneTags(*m)
		if len(dels) == 0 {
			*m = map[string]string{}
		}
		for _, d := range dels {
			if v, ok := (*m)[d.key]; ok && (!d.hasValue || v == d.value) {
				delete(*m, d.key)
			}
		}
		s.noteTagChange(c, ids[i], before, *m)
	}
	c.w.boolean("return", true)
	return nil
}

func cloneTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var tagFilters = set("key", "value", "resource-id", "resource-type")

type tagRow struct {
	key          string
	resourceID   string
	resourceType string
	value        string
}

func (s *Sim) describeTags(c *call) *apiError {
	p := c.p
	limit, err := p.pageLimit(5, 1000, true)
	if err != nil {
		return err
	}
	fs, err := p.filters(tagFilters, true)
	if err != nil {
		return err
	}
	// Rows in a stable order: resource creation order, then key.
	var rows []tagRow
	add := func(id, rt string, tags map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			rows = append(rows, tagRow{key: k, resourceID: id, resourceType: rt, value: tags[k]})
		}
	}
	type res struct {
		seq  uint64
		id   string
		rt   string
		tags map[string]string
	}
	var all []res
	for _, in := range c.r.instanceList {
		all = append(all, res{in.seq, in.id, "instance", in.tags})
	}
	for _, img := range c.r.imageList {
		if img.ownerID == AccountID {
			all = append(all, res{img.seq, img.id, "image", img.tags})
		}
	}
	for _, sn := range c.r.snapshotList {
		if sn.ownerID == AccountID {
			all = append(all, res{sn.seq, sn.id, "snapshot", sn.tags})
		}
	}
	for _, lt := range c.r.templateList {
		all = append(all, res{lt.seq, lt.id, "launch-template", lt.tags})
	}
	vols := make([]*volume, 0, len(c.r.volumes))
	for _, v := range c.r.volumes {
		vols = append(vols, v)
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].id < vols[j].id })
	sort.SliceStable(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	for _, r := range all {
		add(r.id, r.rt, r.tags)
	}
	for _, v := range vols {
		add(v.id, "volume", v.tags)
	}
	match := func(t tagRow) bool {
		return matchFilters(fs, func(name string) []string {
			switch name {
			case "key":
				return []string{t.key}
			case "value":
				return []string{t.value}
			case "resource-id":
				return []string{t.resourceID}
			case "resource-type":
				return []string{t.resourceType}
			}
			if k, ok := strings.CutPrefix(name, "tag:"); ok && k == t.key {
				return []string{t.value}
			}
			return nil
		})
	}
	page, next, err := paginateList(rows, match, "tags", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "tagSet", page, func(t tagRow) {
		w.el("resourceId", t.resourceID)
		w.el("resourceType", t.resourceType)
		w.el("key", t.key)
		w.el("value", t.value)
	})
	w.opt("nextToken", next)
	return nil
}
