package ec2sim

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type launchTemplate struct {
	seq            uint64
	id             string
	name           string
	created        time.Time
	defaultVersion int
	versions       []*ltVersion // versions[i].number == i+1
	tags           map[string]string
}

type ltVersion struct {
	number      int
	description string
	created     time.Time
	// data is LaunchTemplateData as sent, flattened, without the
	// "LaunchTemplateData." prefix (e.g. "ImageId", "TagSpecification.1.ResourceType").
	data params
}

const maxTemplateVersions = 10000

var reTemplateName = regexp.MustCompile(`^[a-zA-Z0-9().\-/_]{3,128}$`)

func (lt *launchTemplate) latest() *ltVersion { return lt.versions[len(lt.versions)-1] }

// version resolves "$Latest", "$Default" or a number.
func (lt *launchTemplate) version(v string) (*ltVersion, *apiError) {
	switch v {
	case "$Latest":
		return lt.latest(), nil
	case "$Default", "":
		return lt.versions[lt.defaultVersion-1], nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > len(lt.versions) {
		return nil, errorf("InvalidLaunchTemplateId.VersionNotFound", "Could not find the specified version %s for the launch template with ID %s.", v, lt.id)
	}
	return lt.versions[n-1], nil
}

// templateByRef finds a template by id or by name (exactly one given).
func (r *region) templateByRef(id, name string) (*launchTemplate, *apiError) {
	switch {
	case id != "" && name != "":
		return nil, errorf("InvalidParameterCombination", "The parameters launchTemplateId and launchTemplateName cannot be used together.")
	case id != "":
		if !reTemplateID.MatchString(id) {
			return nil, errorf("InvalidLaunchTemplateId.Malformed", "The specified launch template ID %s is malformed.", id)
		}
		lt, ok := r.templates[id]
		if !ok {
			return nil, errorf("InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist.", id)
		}
		return lt, nil
	case name != "":
		lt, ok := r.templateNames[name]
		if !ok {
			return nil, errorf("InvalidLaunchTemplateName.NotFoundException", "The specified launch template, with template name %s, does not exist.", name)
		}
		return lt, nil
	}
	return nil, errorf("MissingParameter", "The request must contain the parameter launchTemplateName or launchTemplateId")
}

var (
	reMemberName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	reListIndex  = regexp.MustCompile(`^[1-9][0-9]{0,5}$`)
)

// templateData extracts LaunchTemplateData.* from a request. Keys must be
// shaped like the protocol's (Member.N.Member...): they become XML element
// names in responses.
func templateData(p params) (params, *apiError) {
	out := params{}
	for k, v := range p {
		rest, ok := strings.CutPrefix(k, "LaunchTemplateData.")
		if !ok {
			continue
		}
		segs := strings.Split(rest, ".")
		for i, seg := range segs {
			if !reMemberName.MatchString(seg) && (i == 0 || !reListIndex.MatchString(seg) || isIndex(segs[i-1])) {
				return nil, errorf("UnknownParameter", "The parameter %s is not recognized", k)
			}
		}
		out[rest] = v
	}
	return out, nil
}

// inherit overlays data on base: a top-level member present in data
// replaces that member of base entirely (lists are not merged item by item).
func inherit(base, data params) params {
	top := func(k string) string {
		if i := strings.IndexByte(k, '.'); i >= 0 {
			return k[:i]
		}
		return k
	}
	given := map[string]bool{}
	for k := range data {
		given[top(k)] = true
	}
	out := params{}
	for k, v := range base {
		if !given[top(k)] {
			out[k] = v
		}
	}
	for k, v := range data {
		out[k] = v
	}
	return out
}

func checkTemplateData(d params) *apiError {
	if id := d.str("ImageId"); id != "" && !strings.HasPrefix(id, "resolve:ssm:") && !reImageID.MatchString(id) {
		return errorf("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
	}
	return nil
}

func (s *Sim) createLaunchTemplate(c *call) *apiError {
	p := c.p
	name, err := p.required("LaunchTemplateName")
	if err != nil {
		return err
	}
	if !reTemplateName.MatchString(name) {
		return errorf("InvalidLaunchTemplateName.MalformedException", "A launch template name must be between 3 and 128 characters, and may contain letters, numbers, and the following characters: - ( ) . / _.'")
	}
	if tok := p.str("ClientToken"); tok != "" {
		if id, ok := c.r.templateTokens["create/"+tok]; ok {
			if lt, ok := c.r.templates[id]; ok {
				writeTemplate(c.w, "launchTemplate", lt)
				return nil
			}
		}
	}
	if _, ok := c.r.templateNames[name]; ok {
		return errorf("InvalidLaunchTemplateName.AlreadyExistsException", "Launch template name already in use.")
	}
	data, err := templateData(p)
	if err != nil {
		return err
	}
	if err := checkTemplateData(data); err != nil {
		return err
	}
	desc := p.str("VersionDescription")
	if len(desc) > 255 {
		return errInvalidValue("The version description must be at most 255 characters.")
	}
	specs, err := p.tagSpecs("launch-template")
	if err != nil {
		return err
	}
	tags, err := applyTags(nil, tagsFor(specs, "launch-template"))
	if err != nil {
		return err
	}
	lt := &launchTemplate{seq: s.nextSeq(), id: s.newID("lt"), name: name, created: c.now, defaultVersion: 1, tags: tags}
	lt.versions = []*ltVersion{{number: 1, description: desc, created: c.now, data: data}}
	c.r.templates[lt.id] = lt
	c.r.templateNames[name] = lt
	c.r.templateList = append(c.r.templateList, lt)
	if tok := p.str("ClientToken"); tok != "" {
		c.r.templateTokens["create/"+tok] = lt.id
	}
	writeTemplate(c.w, "launchTemplate", lt)
	return nil
}

func writeTemplate(w *xw, name string, lt *launchTemplate) {
	w.open(name)
	w.el("launchTemplateId", lt.id)
	w.el("launchTemplateName", lt.name)
	w.el("createTime", fmtTime(lt.created))
	w.el("createdBy", "arn:aws:iam::"+AccountID+":root")
	w.integer("defaultVersionNumber", lt.defaultVersion)
	w.integer("latestVersionNumber", len(lt.versions))
	w.tagSet("tagSet", lt.tags)
	w.close(name)
}

func writeTemplateVersion(w *xw, lt *launchTemplate, v *ltVersion) {
	w.el("launchTemplateId", lt.id)
	w.el("launchTemplateName", lt.name)
	w.integer("versionNumber", v.number)
	w.opt("versionDescription", v.description)
	w.el("createTime", fmtTime(v.created))
	w.el("createdBy", "arn:aws:iam::"+AccountID+":root")
	w.boolean("defaultVersion", v.number == lt.defaultVersion)
	writeTemplateData(w, v.data)
}

var launchTemplateFilters = set("create-time", "launch-template-name", "tag-key")

func (s *Sim) describeLaunchTemplates(c *call) *apiError {
	p := c.p
	limit, err := p.pageLimit(1, 200, true)
	if err != nil {
		return err
	}
	fs, err := p.filters(launchTemplateFilters, true)
	if err != nil {
		return err
	}
	items := c.r.templateList
	ids, names := p.list("LaunchTemplateId"), p.list("LaunchTemplateName")
	if len(ids)+len(names) > 0 {
		items = nil
		seen := map[string]bool{}
		for _, id := range ids {
			lt, err := c.r.templateByRef(id, "")
			if err != nil {
				if err.Code == "InvalidLaunchTemplateId.NotFound" {
					err.Message = "At least one of the launch templates specified in the request does not exist."
				}
				return err
			}
			if !seen[lt.id] {
				seen[lt.id] = true
				items = append(items, lt)
			}
		}
		for _, n := range names {
			lt, err := c.r.templateByRef("", n)
			if err != nil {
				err.Message = "At least one of the launch templates specified in the request does not exist."
				return err
			}
			if !seen[lt.id] {
				seen[lt.id] = true
				items = append(items, lt)
			}
		}
		sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
	}
	match := func(lt *launchTemplate) bool {
		return matchFilters(fs, func(name string) []string {
			if v, ok := tagFilterValues(lt.tags, name); ok {
				return v
			}
			switch name {
			case "create-time":
				return []string{fmtTime(lt.created)}
			case "launch-template-name":
				return []string{lt.name}
			}
			return nil
		})
	}
	page, next, err := paginate(items, func(lt *launchTemplate) uint64 { return lt.seq }, match, "lts", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	if len(page) == 0 {
		w.empty("launchTemplates")
	} else {
		w.open("launchTemplates")
		for _, lt := range page {
			writeTemplate(w, "item", lt)
		}
		w.close("launchTemplates")
	}
	w.opt("nextToken", next)
	return nil
}

var templateVersionFilters = set("create-time", "ebs-optimized", "iam-instance-profile", "image-id",
	"instance-type", "is-default-version", "kernel-id", "ram-disk-id")

type ltVersionRef struct {
	lt *launchTemplate
	v  *ltVersion
}

func (s *Sim) describeLaunchTemplateVersions(c *call) *apiError {
	p := c.p
	limit, err := p.pageLimit(1, 200, true)
	if err != nil {
		return err
	}
	fs, err := p.filters(templateVersionFilters, false)
	if err != nil {
		return err
	}
	wanted := p.list("LaunchTemplateVersion")
	var templates []*launchTemplate
	if p.str("LaunchTemplateId") == "" && p.str("LaunchTemplateName") == "" {
		for _, v := range wanted {
			if v != "$Latest" && v != "$Default" {
				return errorf("InvalidParameterCombination", "Specific versions can only be requested together with a launch template ID or name; without one only $Latest and $Default are allowed.")
			}
		}
		if len(wanted) == 0 {
			return errorf("MissingParameter", "The request must contain the parameter launchTemplateName or launchTemplateId")
		}
		templates = c.r.templateList
	} else {
		lt, err := c.r.templateByRef(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
		if err != nil {
			return err
		}
		templates = []*launchTemplate{lt}
	}
	minV, hasMin, err := p.integer("MinVersion")
	if err != nil {
		return err
	}
	maxV, hasMax, err := p.integer("MaxVersion")
	if err != nil {
		return err
	}
	var refs []ltVersionRef
	for _, lt := range templates {
		if len(wanted) > 0 {
			seen := map[int]bool{}
			for _, w := range wanted {
				v, err := lt.version(w)
				if err != nil {
					return err
				}
				if !seen[v.number] {
					seen[v.number] = true
					refs = append(refs, ltVersionRef{lt, v})
				}
			}
			continue
		}
		for _, v := range lt.versions {
			if hasMin && v.number < minV || hasMax && v.number > maxV {
				continue
			}
			refs = append(refs, ltVersionRef{lt, v})
		}
	}
	match := func(r ltVersionRef) bool {
		return matchFilters(fs, func(name string) []string {
			d := r.v.data
			switch name {
			case "create-time":
				return []string{fmtTime(r.v.created)}
			case "image-id":
				return []string{d.str("ImageId")}
			case "instance-type":
				return []string{d.str("InstanceType")}
			case "is-default-version":
				return []string{boolStr(r.v.number == r.lt.defaultVersion)}
			case "iam-instance-profile":
				return []string{d.str("IamInstanceProfile.Arn"), d.str("IamInstanceProfile.Name")}
			case "ebs-optimized":
				return []string{d.str("EbsOptimized")}
			case "kernel-id":
				return []string{d.str("KernelId")}
			case "ram-disk-id":
				return []string{d.str("RamDiskId")}
			}
			return nil
		})
	}
	page, next, err := paginateList(refs, match, "ltv", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "launchTemplateVersionSet", page, func(r ltVersionRef) { writeTemplateVersion(w, r.lt, r.v) })
	w.opt("nextToken", next)
	return nil
}

func (s *Sim) createLaunchTemplateVersion(c *call) *apiError {
	p := c.p
	lt, err := c.r.templateByRef(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
	if err != nil {
		return err
	}
	tok := p.str("ClientToken")
	if tok != "" {
		if n, ok := c.r.templateTokens["version/"+lt.id+"/"+tok]; ok {
			v, _ := lt.version(n)
			if v != nil {
				c.w.open("launchTemplateVersion")
				writeTemplateVersion(c.w, lt, v)
				c.w.close("launchTemplateVersion")
				return nil
			}
		}
	}
	data, err := templateData(p)
	if err != nil {
		return err
	}
	if src := p.str("SourceVersion"); src != "" {
		base, err := lt.version(src)
		if err != nil {
			return err
		}
		data = inherit(base.data, data)
	}
	if err := checkTemplateData(data); err != nil {
		return err
	}
	if len(lt.versions) >= maxTemplateVersions {
		return errorf("MaxTemplateVersionLimitExceeded", "The maximum number of launch template versions (%d) has been reached.", maxTemplateVersions)
	}
	v := &ltVersion{number: len(lt.versions) + 1, description: p.str("VersionDescription"), created: c.now, data: data}
	lt.versions = append(lt.versions, v)
	if tok != "" {
		c.r.templateTokens["version/"+lt.id+"/"+tok] = strconv.Itoa(v.number)
	}
	c.w.open("launchTemplateVersion")
	writeTemplateVersion(c.w, lt, v)
	c.w.close("launchTemplateVersion")
	return nil
}

func (s *Sim) modifyLaunchTemplate(c *call) *apiError {
	p := c.p
	lt, err := c.r.templateByRef(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
	if err != nil {
		return err
	}
	if dv := p.str("SetDefaultVersion"); dv != "" {
		v, err := lt.version(dv)
		if err != nil {
			return err
		}
		lt.defaultVersion = v.number
	}
	writeTemplate(c.w, "launchTemplate", lt)
	return nil
}

func (s *Sim) deleteLaunchTemplate(c *call) *apiError {
	p := c.p
	lt, err := c.r.templateByRef(p.str("LaunchTemplateId"), p.str("LaunchTemplateName"))
	if err != nil {
		return err
	}
	delete(c.r.templates, lt.id)
	delete(c.r.templateNames, lt.name)
	c.r.templateList = removeSeq(c.r.templateList, func(x *launchTemplate) uint64 { return x.seq }, lt.seq)
	writeTemplate(c.w, "launchTemplate", lt)
	return nil
}

// writeTemplateData renders flattened LaunchTemplateData as the response's
// launchTemplateData: member names go lowerCamel, lists become <xSet><item>.
func writeTemplateData(w *xw, d params) {
	root := &tnode{}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return naturalLess(keys[i], keys[j]) })
	for _, k := range keys {
		segs := strings.Split(k, ".")
		n := root
		for i := 0; i < len(segs); i++ {
			seg := segs[i]
			if i+1 < len(segs) && isIndex(segs[i+1]) {
				n = n.child(listName(seg, n == root), true)
				n = n.child(segs[i+1], false)
				n.item = true
				i++
				continue
			}
			n = n.child(lowerFirst(seg), false)
		}
		v := d.str(k)
		n.value = &v
	}
	w.open("launchTemplateData")
	for _, ch := range root.children {
		ch.write(w)
	}
	w.close("launchTemplateData")
}

type tnode struct {
	name     string
	list     bool
	item     bool
	value    *string
	children []*tnode
}

func (n *tnode) child(name string, list bool) *tnode {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	c := &tnode{name: name, list: list}
	n.children = append(n.children, c)
	return c
}

func (n *tnode) write(w *xw) {
	name := n.name
	if n.item {
		name = "item"
	}
	if n.value != nil && len(n.children) == 0 {
		w.el(name, *n.value)
		return
	}
	w.open(name)
	for _, c := range n.children {
		c.write(w)
	}
	w.close(name)
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func listName(seg string, top bool) string {
	switch seg {
	case "LicenseSpecification":
		return "licenseSet"
	case "Tag":
		return "tagSet"
	case "SecurityGroupId":
		if !top {
			return "groupSet"
		}
	}
	return lowerFirst(seg) + "Set"
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// naturalLess orders dotted keys with numeric segments compared as numbers.
func naturalLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr == nil && berr == nil {
			return ai < bi
		}
		return as[i] < bs[i]
	}
	return len(as) < len(bs)
}
