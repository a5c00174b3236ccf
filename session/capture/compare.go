package capture

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
)

// maxDiffLines bounds a comparison's report.
const maxDiffLines = 40

// ignoredHeaders change from one answer to the next by themselves, or
// describe the transfer rather than the answer.
var ignoredHeaders = map[string]bool{
	"Date": true, "Content-Length": true, "Connection": true, "Keep-Alive": true,
	"Transfer-Encoding": true, "Age": true, "Expires": true, "Last-Modified": true, "Etag": true,
}

// Compare reports how the new answer differs from the old one: status,
// headers (credentials masked, ignoredHeaders skipped), and the body, as a
// JSON-aware diff when both bodies are JSON ("$.user.name: "Ada" → "Bob"").
// No lines means the same answer.
func Compare(old, new *Response) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < maxDiffLines {
			out = append(out, fmt.Sprintf(format, args...))
		} else if len(out) == maxDiffLines {
			out = append(out, "… more differences")
		}
	}
	if old.Status != new.Status {
		add("status: %d → %d", old.Status, new.Status)
	}
	oh, nh := maskHeader(old.Header), maskHeader(new.Header)
	names := map[string]bool{}
	for k := range oh {
		names[http.CanonicalHeaderKey(k)] = true
	}
	for k := range nh {
		names[http.CanonicalHeaderKey(k)] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		if !ignoredHeaders[k] {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		a, b := strings.Join(oh.Values(k), ", "), strings.Join(nh.Values(k), ", ")
		switch {
		case a == b:
		case a == "":
			add("header %s: added %q", k, b)
		case b == "":
			add("header %s: removed (was %q)", k, a)
		default:
			add("header %s: %q → %q", k, a, b)
		}
	}
	if old.Body == new.Body {
		return out
	}
	var ov, nv any
	if json.Unmarshal([]byte(old.Body), &ov) == nil && json.Unmarshal([]byte(new.Body), &nv) == nil {
		diffJSON("$", ov, nv, add)
		return out
	}
	add("body: %s", firstDifference(old.Body, new.Body))
	if old.BodyTruncated || new.BodyTruncated {
		add("body: only the first %d KiB of each answer were kept", MaxBody>>10)
	}
	return out
}

func diffJSON(path string, a, b any, add func(string, ...any)) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			x, inA := av[k]
			y, inB := bv[k]
			p := path + "." + k
			switch {
			case !inA:
				add("%s: added %s", p, compact(y))
			case !inB:
				add("%s: removed (was %s)", p, compact(x))
			default:
				diffJSON(p, x, y, add)
			}
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		for i := range max(len(av), len(bv)) {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(av):
				add("%s: added %s", p, compact(bv[i]))
			case i >= len(bv):
				add("%s: removed (was %s)", p, compact(av[i]))
			default:
				diffJSON(p, av[i], bv[i], add)
			}
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		add("%s: %s → %s", path, compact(a), compact(b))
	}
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 120 {
		return string(b[:117]) + "…"
	}
	return string(b)
}

// firstDifference describes where two texts part, by line.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q → %q", i+1, clip(x), clip(y))
		}
	}
	return fmt.Sprintf("%d bytes → %d bytes", len(a), len(b))
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:117] + "…"
	}
	return s
}

// Safe reports whether sending the request again cannot change anything
// by HTTP's rules (RFC 9110 9.2.1: GET, HEAD, OPTIONS, TRACE). Others, even
// idempotent PUT and DELETE, may change data again, so a replay asks first.
func (e Exchange) Safe() bool {
	switch e.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
