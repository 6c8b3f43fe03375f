// Package eventpattern matches events against Amazon EventBridge event
// patterns, as the local stack routes the EC2 "Tag Change on Resource"
// events to the template's rules. It implements the comparison operators
// of the EventBridge reference
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html):
// exact values (strings, numbers, true, false, null, ""), prefix, suffix,
// equals-ignore-case, wildcard, anything-but (values, lists, prefix,
// suffix, equals-ignore-case, wildcard), numeric ranges, cidr, exists and
// $or; arrays in events match when any element matches
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html).
package eventpattern

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
)

// Pattern is a parsed event pattern.
type Pattern struct{ root object }

// object is a pattern object: every field must match (AND), and each of its
// $or alternatives must have one that matches.
type object struct {
	fields []field
	ors    [][]object
}

type field struct {
	name string
	// Either nested (an object pattern) or leaf (a list of matchers, OR).
	nested *object
	leaf   []matcher
}

// matcher is one element of a leaf's list.
type matcher interface {
	// match tells whether the event's value (present) matches.
	match(v any) bool
}

// Parse reads a pattern; it names what is wrong with one EventBridge would
// refuse (InvalidEventPatternException).
func Parse(data []byte) (*Pattern, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("event pattern: %w", err)
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("event pattern: must be a JSON object")
	}
	root, err := parseObject(m, "")
	if err != nil {
		return nil, fmt.Errorf("event pattern: %w", err)
	}
	return &Pattern{root: root}, nil
}

// MustParse is Parse for patterns known to be valid (tests, constants).
func MustParse(pattern string) *Pattern {
	p, err := Parse([]byte(pattern))
	if err != nil {
		panic(err)
	}
	return p
}

func parseObject(m map[string]any, path string) (object, error) {
	var o object
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		at := join(path, name)
		switch v := m[name].(type) {
		case map[string]any:
			nested, err := parseObject(v, at)
			if err != nil {
				return object{}, err
			}
			o.fields = append(o.fields, field{name: name, nested: &nested})
		case []any:
			if name == "$or" {
				var alts []object
				for i, a := range v {
					am, ok := a.(map[string]any)
					if !ok {
						return object{}, fmt.Errorf("%s[%d]: each $or alternative must be an object", at, i)
					}
					alt, err := parseObject(am, at)
					if err != nil {
						return object{}, err
					}
					alts = append(alts, alt)
				}
				if len(alts) < 2 {
					return object{}, fmt.Errorf("%s: $or needs at least two alternatives", at)
				}
				o.ors = append(o.ors, alts)
				continue
			}
			if len(v) == 0 {
				return object{}, fmt.Errorf("%s: empty arrays are not allowed; list at least one value", at)
			}
			var leaf []matcher
			for i, e := range v {
				mt, err := parseMatcher(e, fmt.Sprintf("%s[%d]", at, i))
				if err != nil {
					return object{}, err
				}
				leaf = append(leaf, mt)
			}
			o.fields = append(o.fields, field{name: name, leaf: leaf})
		default:
			return object{}, fmt.Errorf("%s: %s must be an array of values or an object", at, describe(v))
		}
	}
	return o, nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func parseMatcher(e any, at string) (matcher, error) {
	switch v := e.(type) {
	case nil, string, bool, json.Number:
		return exact{v}, nil
	case map[string]any:
		if len(v) != 1 {
			return nil, fmt.Errorf("%s: an operator object has exactly one key, got %s", at, describe(v))
		}
		for op, arg := range v {
			return parseOperator(op, arg, at)
		}
	}
	return nil, fmt.Errorf("%s: %s is not a value or an operator", at, describe(e))
}

func parseOperator(op string, arg any, at string) (matcher, error) {
	switch op {
	case "prefix", "suffix":
		s, fold, err := stringArg(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %w", at, op, err)
		}
		return affix{suffix: op == "suffix", s: s, fold: fold}, nil
	case "equals-ignore-case":
		s, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: equals-ignore-case wants a string", at)
		}
		return ignoreCase{s}, nil
	case "wildcard":
		s, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: wildcard wants a string", at)
		}
		if strings.Contains(s, "**") {
			return nil, fmt.Errorf("%s: wildcard %q has consecutive *, which EventBridge refuses", at, s)
		}
		return wildcard{s}, nil
	case "exists":
		b, ok := arg.(bool)
		if !ok {
			return nil, fmt.Errorf("%s: exists wants true or false", at)
		}
		return exists{b}, nil
	case "numeric":
		return parseNumeric(arg, at)
	case "cidr":
		s, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: cidr wants a string such as \"10.0.0.0/24\"", at)
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: cidr %q: %v", at, s, err)
		}
		return cidr{p.Masked()}, nil
	case "anything-but":
		return parseAnythingBut(arg, at)
	}
	return nil, fmt.Errorf("%s: unknown operator %q", at, op)
}

// stringArg reads the argument of prefix and suffix: a string, or
// {"equals-ignore-case": string}.
func stringArg(arg any) (string, bool, error) {
	switch v := arg.(type) {
	case string:
		return v, false, nil
	case map[string]any:
		if s, ok := v["equals-ignore-case"].(string); ok && len(v) == 1 {
			return s, true, nil
		}
	}
	return "", false, fmt.Errorf("wants a string or {\"equals-ignore-case\": string}")
}

func parseAnythingBut(arg any, at string) (matcher, error) {
	switch v := arg.(type) {
	case string, json.Number:
		return not{[]matcher{exact{v}}}, nil
	case []any:
		if len(v) == 0 {
			return nil, fmt.Errorf("%s: anything-but wants at least one value", at)
		}
		var ms []matcher
		for _, e := range v {
			switch e.(type) {
			case string, json.Number:
				ms = append(ms, exact{e})
			default:
				return nil, fmt.Errorf("%s: anything-but lists strings or numbers, not %s", at, describe(e))
			}
		}
		return not{ms}, nil
	case map[string]any:
		if len(v) != 1 {
			return nil, fmt.Errorf("%s: anything-but takes one of prefix, suffix, equals-ignore-case, wildcard", at)
		}
		for op, a := range v {
			switch op {
			case "prefix", "suffix", "equals-ignore-case", "wildcard":
			default:
				return nil, fmt.Errorf("%s: anything-but does not take %q", at, op)
			}
			// equals-ignore-case and wildcard may list several values.
			if list, ok := a.([]any); ok && (op == "equals-ignore-case" || op == "wildcard") {
				var ms []matcher
				for _, e := range list {
					m, err := parseOperator(op, e, at)
					if err != nil {
						return nil, err
					}
					ms = append(ms, m)
				}
				return not{ms}, nil
			}
			m, err := parseOperator(op, a, at)
			if err != nil {
				return nil, err
			}
			return not{[]matcher{m}}, nil
		}
	}
	return nil, fmt.Errorf("%s: anything-but wants a value, a list or an operator, not %s", at, describe(arg))
}

func parseNumeric(arg any, at string) (matcher, error) {
	list, ok := arg.([]any)
	if !ok || len(list) == 0 || len(list)%2 != 0 || len(list) > 4 {
		return nil, fmt.Errorf("%s: numeric wants [op, number] or [op, number, op, number]", at)
	}
	var n numeric
	for i := 0; i < len(list); i += 2 {
		op, _ := list[i].(string)
		num, ok := list[i+1].(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s: numeric %v: the operand must be a number", at, list[i+1])
		}
		f, err := num.Float64()
		if err != nil {
			return nil, fmt.Errorf("%s: numeric %v: %v", at, num, err)
		}
		switch op {
		case "=", "<", "<=", ">", ">=":
		default:
			return nil, fmt.Errorf("%s: numeric operator %q: use =, <, <=, > or >=", at, list[i])
		}
		if op == "=" && len(list) > 2 {
			return nil, fmt.Errorf("%s: numeric = stands alone", at)
		}
		n = append(n, bound{op, f})
	}
	return n, nil
}

// Match tells whether the event (JSON) matches the pattern.
func (p *Pattern) Match(event []byte) (bool, error) {
	var ev any
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return false, fmt.Errorf("event: %w", err)
	}
	m, ok := ev.(map[string]any)
	if !ok {
		return false, fmt.Errorf("event: must be a JSON object")
	}
	return p.root.match(m), nil
}

func (o object) match(ev map[string]any) bool {
	for _, f := range o.fields {
		v, present := ev[f.name]
		if f.nested != nil {
			if !present || !matchNested(*f.nested, v) {
				return false
			}
			continue
		}
		if !matchLeaf(f.leaf, v, present) {
			return false
		}
	}
	for _, alts := range o.ors {
		any := false
		for _, alt := range alts {
			if alt.match(ev) {
				any = true
				break
			}
		}
		if !any {
			return false
		}
	}
	return true
}

// matchNested matches an object pattern against an object, or an array
// holding one that matches.
func matchNested(o object, v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return o.match(x)
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok && o.match(m) {
				return true
			}
		}
	}
	return false
}

// matchLeaf: one of the matchers matches the value, or, for an array, one
// of its elements. A missing field matches only {"exists": false}; exists
// works on leaf values only (an object is not a leaf).
func matchLeaf(ms []matcher, v any, present bool) bool {
	for _, m := range ms {
		if e, ok := m.(exists); ok {
			if e.want == (present && isLeaf(v)) {
				return true
			}
			continue
		}
		if !present {
			continue
		}
		if arr, ok := v.([]any); ok {
			for _, e := range arr {
				if m.match(e) {
					return true
				}
			}
			continue
		}
		if m.match(v) {
			return true
		}
	}
	return false
}

func isLeaf(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return false
	case []any:
		return len(x) > 0
	}
	return true
}

type exact struct{ v any }

func (e exact) match(v any) bool {
	switch want := e.v.(type) {
	case nil:
		return v == nil
	case string:
		s, ok := v.(string)
		return ok && s == want
	case bool:
		b, ok := v.(bool)
		return ok && b == want
	case json.Number:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		a, err1 := want.Float64()
		b, err2 := n.Float64()
		return err1 == nil && err2 == nil && a == b
	}
	return false
}

type affix struct {
	suffix bool
	s      string
	fold   bool
}

func (a affix) match(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	want := a.s
	if a.fold {
		s, want = strings.ToLower(s), strings.ToLower(want)
	}
	if a.suffix {
		return strings.HasSuffix(s, want)
	}
	return strings.HasPrefix(s, want)
}

type ignoreCase struct{ s string }

func (c ignoreCase) match(v any) bool {
	s, ok := v.(string)
	return ok && strings.EqualFold(s, c.s)
}

// wildcard: * matches any run of characters; \* and \\ are literal.
type wildcard struct{ p string }

func (w wildcard) match(v any) bool {
	s, ok := v.(string)
	return ok && globMatch(w.p, s)
}

func globMatch(p, s string) bool {
	// Split the pattern into literal segments separated by unescaped *.
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && (p[i+1] == '*' || p[i+1] == '\\'):
			cur.WriteByte(p[i+1])
			i++
		case p[i] == '*':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	segs = append(segs, cur.String())
	if len(segs) == 1 {
		return s == segs[0]
	}
	if !strings.HasPrefix(s, segs[0]) {
		return false
	}
	s = s[len(segs[0]):]
	last := segs[len(segs)-1]
	for _, seg := range segs[1 : len(segs)-1] {
		i := strings.Index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return strings.HasSuffix(s, last)
}

type exists struct{ want bool }

func (exists) match(any) bool { return false } // handled by matchLeaf

type bound struct {
	op string
	n  float64
}

type numeric []bound

func (n numeric) match(v any) bool {
	num, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := num.Float64()
	if err != nil || math.IsNaN(f) {
		return false
	}
	for _, b := range n {
		var ok bool
		switch b.op {
		case "=":
			ok = f == b.n
		case "<":
			ok = f < b.n
		case "<=":
			ok = f <= b.n
		case ">":
			ok = f > b.n
		case ">=":
			ok = f >= b.n
		}
		if !ok {
			return false
		}
	}
	return true
}

type cidr struct{ p netip.Prefix }

func (c cidr) match(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	a, err := netip.ParseAddr(s)
	return err == nil && c.p.Contains(a)
}

// not is anything-but: the value is of the excluded kind's type and none of
// the excluded values matches it.
type not struct{ excluded []matcher }

func (n not) match(v any) bool {
	if !sameKind(n.excluded[0], v) {
		return false
	}
	for _, m := range n.excluded {
		if m.match(v) {
			return false
		}
	}
	return true
}

// sameKind: anything-but "x" matches strings other than x, anything-but 1
// numbers other than 1.
func sameKind(m matcher, v any) bool {
	switch x := m.(type) {
	case exact:
		switch x.v.(type) {
		case json.Number:
			_, ok := v.(json.Number)
			return ok
		}
	}
	_, ok := v.(string)
	return ok
}
