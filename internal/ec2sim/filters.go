package ec2sim

import (
	"maps"
	"slices"
	"strings"
)

// filter is one Filter.N of a Describe call. Values within a filter are
// OR-ed, filters are AND-ed; '*' matches any run of characters, '?' zero or
// one character, and '\' escapes either (EC2's documented semantics).
type filter struct {
	Name     string
	patterns []pattern
}

type pattern struct {
	literal string // set when the value has no wildcard: exact comparison
	glob    []rune // otherwise the value with escapes kept as pairs
	isGlob  bool
}

// filters parses Filter.N.Name / Filter.N.Value.M and rejects names that
// known does not accept ("tag:" names are always accepted where tagsOK).
func (p params) filters(known map[string]bool, tagsOK bool) ([]filter, *apiError) {
	var out []filter
	for _, n := range p.indexes("Filter") {
		pre := member("Filter", n)
		name := p.str(pre + "Name")
		if name == "" {
			return nil, errMissing("Filter." + strings.TrimSuffix(pre[len("Filter."):], ".") + ".Name")
		}
		if !(known[name] || tagsOK && (strings.HasPrefix(name, "tag:") && len(name) > 4)) {
			return nil, errInvalidValue("The filter '%s' is invalid", name)
		}
		f := filter{Name: name}
		for _, v := range p.list(pre + "Value") {
			f.patterns = append(f.patterns, compilePattern(v))
		}
		out = append(out, f)
	}
	return out, nil
}

func compilePattern(v string) pattern {
	if !strings.ContainsAny(v, `*?\`) {
		return pattern{literal: v}
	}
	return pattern{glob: []rune(v), isGlob: true}
}

func (p pattern) match(s string) bool {
	if !p.isGlob {
		return p.literal == s
	}
	return globMatch(p.glob, []rune(s))
}

// globMatch matches with '*' (any run), '?' (zero or one rune) and '\'
// escapes, by dynamic programming over (pattern, subject) positions: linear
// memory, no exponential backtracking on hostile patterns.
func globMatch(pat, s []rune) bool {
	// cur[j]: pattern prefix consumed so far matches s[:j].
	cur := make([]bool, len(s)+1)
	next := make([]bool, len(s)+1)
	cur[0] = true
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		escaped := false
		if c == '\\' && i+1 < len(pat) {
			i++
			c = pat[i]
			escaped = true
		}
		for j := range next {
			next[j] = false
		}
		switch {
		case !escaped && c == '*':
			any := false
			for j := 0; j <= len(s); j++ {
				any = any || cur[j]
				next[j] = any
			}
		case !escaped && c == '?':
			for j := 0; j <= len(s); j++ {
				next[j] = cur[j] || j > 0 && cur[j-1]
			}
		default:
			for j := 1; j <= len(s); j++ {
				next[j] = cur[j-1] && s[j-1] == c
			}
		}
		cur, next = next, cur
	}
	return cur[len(s)]
}

// matchFilters reports whether a resource passes every filter; values
// returns the resource's values for a filter name (nil when it has none).
func matchFilters(fs []filter, values func(name string) []string) bool {
	for _, f := range fs {
		if !f.matchAny(values(f.Name)) {
			return false
		}
	}
	return true
}

func (f filter) matchAny(vals []string) bool {
	for _, v := range vals {
		for _, p := range f.patterns {
			if p.match(v) {
				return true
			}
		}
	}
	return false
}

// tagFilterValues answers the tag filters common to every taggable
// resource: tag:<key> → the value, tag-key → every key.
func tagFilterValues(tags map[string]string, name string) ([]string, bool) {
	if k, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := tags[k]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	if name == "tag-key" {
		return slices.Sorted(maps.Keys(tags)), true
	}
	return nil, false
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
