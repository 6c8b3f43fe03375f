package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// decodeStrict decodes data into v (a pointer) and reports, as problems
// under the path root, every unknown or duplicated field, trailing data and
// type mismatches.
//
// encoding/json alone is not strict enough for a policy: DisallowUnknownFields
// stops at the first unknown field without saying where it is, field names
// match case-insensitively ("Keep" would silently set keep), and a duplicated
// key silently wins. A walk over the token stream against v's type finds all
// of these at once, with their full path.
//
// An empty root makes the paths relative to the document ("trigger",
// "policy.name"); problems with the document itself then name "input".
func decodeStrict(data []byte, v any, root string) problems {
	var ps problems
	top := root
	if top == "" {
		top = "input"
	}
	if len(bytes.TrimSpace(data)) == 0 {
		ps.add(top, "is empty; expected a JSON object")
		return ps
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	t := reflect.TypeOf(v).Elem()
	first, err := peekDelim(data)
	if err == nil && first != '{' {
		ps.add(top, "must be a JSON object")
		return ps
	}
	if err := walkJSON(dec, t, root, &ps); err != nil {
		ps.add(top, "is not valid JSON: %v", err)
		return ps
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		ps.add(top, "has data after the JSON object; send exactly one object")
		return ps
	}
	if len(ps) > 0 {
		return ps
	}
	// The walk proved the structure; Unmarshal now only fails on a value of
	// the wrong type, which it reports with its Go-side path.
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := top
			if te.Field != "" {
				field = joinPath(root, te.Field)
			}
			ps.add(field, "is a JSON %s; expected %s", te.Value, jsonKind(te.Type))
		} else {
			ps.add(top, "cannot be decoded: %v", err)
		}
	}
	return ps
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// peekDelim returns the first non-space byte of data.
func peekDelim(data []byte) (byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return 0, io.EOF
	}
	return trimmed[0], nil
}

// walkJSON reads one JSON value from dec. When t is a struct (or a map,
// slice or pointer leading to one) it checks object keys against t's json
// field names; t == nil skips the value unchecked. Problems are appended to
// ps; only malformed JSON ends the walk with an error.
func walkJSON(dec *json.Decoder, t reflect.Type, path string, ps *problems) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		t = nil // decodes itself (time.Time, json.RawMessage): opaque here
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil // scalar: its type is checked by Unmarshal
	}
	switch delim {
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := keyTok.(string)
			var child reflect.Type
			var childPath string
			switch {
			case fields != nil:
				childPath = joinPath(path, key)
				ft, known := fields[key]
				if !known {
					ps.add(childPath, "unknown field%s", suggest(key, fields))
				}
				child = ft
			case t != nil && t.Kind() == reflect.Map:
				childPath = fmt.Sprintf("%s[%q]", path, key)
				child = t.Elem()
			default:
				childPath = joinPath(path, key)
			}
			if seen[key] && t != nil {
				ps.add(childPath, "appears more than once; keep one")
			}
			seen[key] = true
			if err := walkJSON(dec, child, childPath, ps); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkJSON(dec, elem, fmt.Sprintf("%s[%d]", path, i), ps); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonFields maps the JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// suggest names the known field the user probably meant, or lists them all.
func suggest(key string, fields map[string]reflect.Type) string {
	names := slices.Sorted(maps.Keys(fields))
	for _, name := range names {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf(" (field names are case-sensitive: did you mean %q?)", name)
		}
	}
	best, bestDist := "", 3 // only typos of up to two edits are worth suggesting
	for _, name := range names {
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return "; known fields: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo; also bounds the work on hostile input
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// jsonKind describes a Go type the way a JSON author thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	if t == reflect.TypeOf(json.RawMessage(nil)) {
		return "a JSON value"
	}
	return "another type"
}
