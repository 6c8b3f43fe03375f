package ec2sim

import (
	"encoding/base64"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// EC2 wire formats: the Query protocol's flattened parameters on the way in,
// lowerCamel XML on the way out.

const (
	ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"
	// isoMillis is the format of creationDate, deprecationTime and friends.
	isoMillis = "2006-01-02T15:04:05.000Z"
)

func fmtTime(t time.Time) string { return t.UTC().Format(isoMillis) }

// params is a request's decoded form (body and query string merged).
type params url.Values

func (p params) str(k string) string {
	if v := p[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (p params) has(k string) bool { _, ok := p[k]; return ok }

// required returns the parameter or MissingParameter.
func (p params) required(k string) (string, *apiError) {
	v := p.str(k)
	if v == "" {
		return "", errMissing(k)
	}
	return v, nil
}

func (p params) boolean(k string) (bool, *apiError) {
	v, ok := p[k]
	if !ok || len(v) == 0 || v[0] == "" {
		return false, nil
	}
	switch strings.ToLower(v[0]) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errInvalidValue("Value (%s) for parameter %s is invalid. Expected: 'true' or 'false'.", v[0], k)
}

// integer returns the value, whether it was present, or InvalidParameterValue.
func (p params) integer(k string) (int, bool, *apiError) {
	v := p.str(k)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, true, errInvalidValue("Value (%s) for parameter %s is invalid. Expected an integer.", v, k)
	}
	return n, true, nil
}

// indexes returns the sorted distinct N of keys "prefix.N" or "prefix.N.<rest>".
func (p params) indexes(prefix string) []int {
	pre := prefix + "."
	seen := map[int]bool{}
	for k := range p {
		if !strings.HasPrefix(k, pre) {
			continue
		}
		rest := k[len(pre):]
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			rest = rest[:i]
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			continue
		}
		seen[n] = true
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// list returns the values of "prefix.1", "prefix.2", ... in index order.
func (p params) list(prefix string) []string {
	var out []string
	for _, n := range p.indexes(prefix) {
		if v, ok := p[prefix+"."+strconv.Itoa(n)]; ok && len(v) > 0 {
			out = append(out, v[0])
		}
	}
	return out
}

// member returns the key of struct member N of a list: "prefix.N.".
func member(prefix string, n int) string { return prefix + "." + strconv.Itoa(n) + "." }

type tag struct{ Key, Value string }

// tagSpec is one TagSpecification.N of a create call.
type tagSpec struct {
	ResourceType string
	Tags         []tag
}

// tagSpecs parses TagSpecification.N.ResourceType / .Tag.M.Key / .Tag.M.Value
// and checks the resource types against allowed and the tags against EC2's
// rules.
func (p params) tagSpecs(allowed ...string) ([]tagSpec, *apiError) {
	var out []tagSpec
	for _, n := range p.indexes("TagSpecification") {
		pre := member("TagSpecification", n)
		rt := p.str(pre + "ResourceType")
		ok := false
		for _, a := range allowed {
			ok = ok || a == rt
		}
		if !ok {
			return nil, errInvalidValue("'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tags, err := p.tags(pre + "Tag")
		if err != nil {
			return nil, err
		}
		out = append(out, tagSpec{ResourceType: rt, Tags: tags})
	}
	return out, nil
}

// tagsFor merges the tags of every spec for resource type rt.
func tagsFor(specs []tagSpec, rt string) []tag {
	var out []tag
	for _, s := range specs {
		if s.ResourceType == rt {
			out = append(out, s.Tags...)
		}
	}
	return out
}

// tags parses prefix.N.Key / prefix.N.Value for a create call: a missing
// value is refused as EC2 does, an empty one is fine.
func (p params) tags(prefix string) ([]tag, *apiError) {
	var out []tag
	for _, n := range p.indexes(prefix) {
		pre := member(prefix, n)
		k := p.str(pre + "Key")
		if !p.has(pre + "Value") {
			return nil, errInvalidValue("Tag value cannot be null. Use empty string instead.")
		}
		if err := checkTag(k, p.str(pre+"Value")); err != nil {
			return nil, err
		}
		out = append(out, tag{Key: k, Value: p.str(pre + "Value")})
	}
	return out, nil
}

// checkTag applies EC2's tag restrictions: non-empty key of at most 128
// characters that does not start with aws:, value of at most 256.
func checkTag(k, v string) *apiError {
	switch {
	case k == "":
		return errorf("InvalidTagKey.Malformed", "Tag keys cannot be empty or null, and cannot start with aws:")
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return errInvalidValue("Tag keys starting with 'aws:' are reserved for internal use")
	case utf8.RuneCountInString(k) > 128:
		return errInvalidValue("Tag key exceeds the maximum length of 128 characters")
	case utf8.RuneCountInString(v) > 256:
		return errInvalidValue("Tag value exceeds the maximum length of 256 characters")
	}
	return nil
}

// maxTags is EC2's per-resource limit on user tags.
const maxTags = 50

// applyTags sets tags on m, refusing when the result exceeds the limit.
func applyTags(m map[string]string, tags []tag) (map[string]string, *apiError) {
	if m == nil {
		m = map[string]string{}
	}
	n := len(m)
	for _, t := range tags {
		if _, ok := m[t.Key]; !ok {
			n++
		}
	}
	if n > maxTags {
		return m, errorf("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
	}
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m, nil
}

// Pagination. Lists are kept in creation order (a sequence number per
// resource); a token names the sequence number to resume after, so paging
// is stable while resources come and go.

func encodeToken(kind string, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + strconv.FormatUint(seq, 10)))
}

func decodeToken(kind, tok string) (uint64, *apiError) {
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		s := string(raw)
		if strings.HasPrefix(s, kind+":") {
			if n, err := strconv.ParseUint(s[len(kind)+1:], 10, 64); err == nil {
				return n, nil
			}
		}
	}
	return 0, errorf("InvalidPaginationToken", "Invalid pagination token: %s", tok)
}

// pageLimit reads MaxResults: 0 (absent) means everything. A value outside
// [lo, hi] is refused when strict, as the actions that validate it do, and
// clamped otherwise.
func (p params) pageLimit(lo, hi int, strict bool) (int, *apiError) {
	n, ok, err := p.integer("MaxResults")
	if err != nil || !ok {
		return 0, err
	}
	if n < lo || n > hi {
		if strict {
			return 0, errInvalidValue("Value ( %d ) for parameter maxResults is invalid. Parameter must be between %d and %d.", n, lo, hi)
		}
		n = max(lo, min(n, hi))
	}
	return n, nil
}

// paginate walks items (sorted by seq) after the token's position and
// returns up to limit matches plus the token for the rest ("" when none
// is left).
func paginate[T any](items []T, seqOf func(T) uint64, match func(T) bool, kind, token string, limit int) ([]T, string, *apiError) {
	after, err := decodeToken(kind, token)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if token != "" {
		start = sort.Search(len(items), func(i int) bool { return seqOf(items[i]) > after })
	}
	var out []T
	for i := start; i < len(items); i++ {
		it := items[i]
		if !match(it) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, encodeToken(kind, seqOf(out[len(out)-1])), nil
		}
		out = append(out, it)
	}
	return out, "", nil
}

// paginateList is paginate for a list built afresh by each call: an item's
// position in it (from 1) is its sequence number.
func paginateList[T any](items []T, match func(T) bool, kind, token string, limit int) ([]T, string, *apiError) {
	type row struct {
		pos  uint64
		item T
	}
	rows := make([]row, len(items))
	for i, it := range items {
		rows[i] = row{uint64(i + 1), it}
	}
	page, next, err := paginate(rows, func(r row) uint64 { return r.pos }, func(r row) bool { return match(r.item) }, kind, token, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]T, len(page))
	for i, r := range page {
		out[i] = r.item
	}
	return out, next, nil
}

// removeSeq deletes the element with sequence number seq from a sorted slice.
func removeSeq[T any](items []T, seqOf func(T) uint64, seq uint64) []T {
	i := sort.Search(len(items), func(i int) bool { return seqOf(items[i]) >= seq })
	if i < len(items) && seqOf(items[i]) == seq {
		copy(items[i:], items[i+1:])
		var zero T
		items[len(items)-1] = zero
		items = items[:len(items)-1]
	}
	return items
}

// xw writes EC2-style XML. Elements are written in the order called.
type xw struct{ b strings.Builder }

func (w *xw) open(name string)  { w.b.WriteByte('<'); w.b.WriteString(name); w.b.WriteByte('>') }
func (w *xw) close(name string) { w.b.WriteString("</"); w.b.WriteString(name); w.b.WriteByte('>') }
func (w *xw) empty(name string) { w.b.WriteByte('<'); w.b.WriteString(name); w.b.WriteString("/>") }

// el writes <name>value</name>, escaping value.
func (w *xw) el(name, value string) {
	w.open(name)
	escapeInto(&w.b, value)
	w.close(name)
}

// opt writes the element only when value is not empty.
func (w *xw) opt(name, value string) {
	if value != "" {
		w.el(name, value)
	}
}

func (w *xw) boolean(name string, v bool) { w.el(name, strconv.FormatBool(v)) }
func (w *xw) integer(name string, v int)  { w.el(name, strconv.Itoa(v)) }

// tagSet writes tags sorted by key as <tagSet><item><key/><value/></item>...
func (w *xw) tagSet(name string, tags map[string]string) {
	if len(tags) == 0 {
		w.empty(name)
		return
	}
	w.open(name)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		w.open("item")
		w.el("key", k)
		w.el("value", tags[k])
		w.close("item")
	}
	w.close(name)
}

// xmlList writes <name><item>...</item>...</name>, or <name/> when empty.
func xmlList[T any](w *xw, name string, items []T, each func(T)) {
	if len(items) == 0 {
		w.empty(name)
		return
	}
	w.open(name)
	for _, it := range items {
		w.open("item")
		each(it)
		w.close("item")
	}
	w.close(name)
}

func escapeInto(b *strings.Builder, s string) {
	if !needsEscape(s) {
		b.WriteString(s)
		return
	}
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		case '\r':
			b.WriteString("&#xD;")
		default:
			if r < 0x20 && r != '\n' && r != '\t' || r == utf8.RuneError || r == 0xFFFE || r == 0xFFFF {
				// Not representable in XML 1.0; the SDK parser would reject it.
				b.WriteRune('\uFFFD')
				continue
			}
			b.WriteRune(r)
		}
	}
}

// needsEscape reports whether s has anything escapeInto must rewrite; most
// values (ids, names, dates) don't, and skip the rune loop.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' || c == '"' || c == '\'' {
			return true
		}
	}
	return false
}
