package tunnel

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// Match modes of a Filter, as the CLI's --match, .kloop.yaml's match and
// launch configurations spell them; the first is the default.
const (
	MatchAll = "all"
	MatchAny = "any"
)

// Methods are the HTTP methods a filter may name. Custom methods are
// refused so that a typo (GTE) fails at once instead of matching nothing.
var Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

// maxPathRegex bounds a path regex; real ones are a few dozen bytes, and
// the agent runs it on every request.
const maxPathRegex = 1024

// Filter is a personal intercept's rule: the HTTP requests it takes. Each
// header, the path prefix, the path regex and the method list is one
// condition; a request is taken when it meets all of them, or with Any at
// least one. Unmatched requests go to the app container.
type Filter struct {
	Headers []HeaderMatch `json:"headers,omitempty"`
	// PathPrefix matches the request's path (decoded, without the query).
	PathPrefix string `json:"pathPrefix,omitempty"`
	// PathRegex is a Go (RE2) regular expression searched in the path;
	// anchor it with ^ and $ to match the whole path.
	PathRegex string `json:"pathRegex,omitempty"`
	// Methods: the request's method is one of these.
	Methods []string `json:"methods,omitempty"`
	Any     bool     `json:"any,omitempty"`

	re *regexp.Regexp
}

// RuleSpec is a filter as users write it, in the CLI, .kloop.yaml and
// launch configurations; NewFilter checks and builds it.
type RuleSpec struct {
	Header    map[string]string
	Path      string
	PathRegex string
	Method    []string
	Match     string
}

// Empty reports whether s names no condition (a global intercept).
func (s RuleSpec) Empty() bool {
	return len(s.Header) == 0 && s.Path == "" && s.PathRegex == "" && len(s.Method) == 0 && s.Match == ""
}

// NewFilter checks s and returns its filter, or nil for a global intercept
// (no condition). Errors name the field and, for the path regex, the offset.
func NewFilter(s RuleSpec) (*Filter, error) {
	if s.Empty() {
		return nil, nil
	}
	f := &Filter{PathPrefix: s.Path, PathRegex: s.PathRegex}
	anyOf, err := ParseMatch(s.Match)
	if err != nil {
		return nil, err
	}
	f.Any = anyOf
	names := make([]string, 0, len(s.Header))
	for name := range s.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f.Headers = append(f.Headers, HeaderMatch{Name: name, Value: s.Header[name]})
	}
	for _, m := range s.Method {
		ms, err := ParseMethods(m)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !slices.Contains(f.Methods, m) {
				f.Methods = append(f.Methods, m)
			}
		}
	}
	if err := f.Compile(); err != nil {
		return nil, err
	}
	return f, nil
}

// ParseMatch reads a match mode: "" or "all" (false), "any" (true).
func ParseMatch(s string) (anyOf bool, err error) {
	switch s {
	case "", MatchAll:
		return false, nil
	case MatchAny:
		return true, nil
	}
	return false, fmt.Errorf("match %q is not all or any: all takes a request that meets every condition (the default), any one that meets at least one", s)
}

// ParseMethods reads a comma-separated method list such as GET,POST; case
// does not matter. The error names the item that is wrong.
func ParseMethods(s string) ([]string, error) {
	var out []string
	for i, item := range strings.Split(s, ",") {
		m := strings.ToUpper(strings.TrimSpace(item))
		if !slices.Contains(Methods, m) {
			where := ""
			if strings.Contains(s, ",") {
				where = fmt.Sprintf(" (item %d of %q)", i+1, s)
			}
			if m == "" {
				return nil, fmt.Errorf("method list %q has an empty item%s; write methods such as GET,POST", s, where)
			}
			return nil, fmt.Errorf("method %q%s is not an HTTP method; use %s", strings.TrimSpace(item), where, strings.Join(Methods, ", "))
		}
		out = append(out, m)
	}
	return out, nil
}

// CheckPathPrefix reports a path prefix that no request path can have.
func CheckPathPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with /, such as /api/", p)
	}
	return nil
}

// RegexError is a path regex that does not compile, with the offset (in
// bytes, from 0) of the part that is wrong.
type RegexError struct {
	Pattern string
	Offset  int
	Err     error
}

func (e *RegexError) Error() string {
	return fmt.Sprintf("path regex %q at offset %d: %v", e.Pattern, e.Offset, e.Err)
}

func (e *RegexError) Unwrap() error { return e.Err }

// CompilePathRegex compiles a path regex, reporting where it is wrong.
func CompilePathRegex(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, &RegexError{Pattern: p, Err: errors.New("the regex is empty; leave it out to match every path")}
	}
	if len(p) > maxPathRegex {
		return nil, &RegexError{Pattern: p, Offset: maxPathRegex, Err: fmt.Errorf("longer than the %d bytes allowed", maxPathRegex)}
	}
	re, err := regexp.Compile(p)
	if err == nil {
		return re, nil
	}
	off := 0
	var se *syntax.Error
	if errors.As(err, &se) {
		// syntax.Error carries the offending fragment, not its offset;
		// the fragment is the tail or a piece of the pattern, so its last
		// occurrence is where the parser stopped.
		if i := strings.LastIndex(p, se.Expr); i >= 0 && se.Expr != "" {
			off = i
		}
		return nil, &RegexError{Pattern: p, Offset: off, Err: fmt.Errorf("%s: %q", se.Code, se.Expr)}
	}
	return nil, &RegexError{Pattern: p, Err: err}
}

// Compile checks every condition and prepares the filter for Matches.
func (f *Filter) Compile() error {
	if len(f.Headers) == 0 && f.PathPrefix == "" && f.PathRegex == "" && len(f.Methods) == 0 {
		return errors.New("the filter has no condition: give a header, a path, a path regex or a method (match alone selects nothing)")
	}
	for _, h := range f.Headers {
		if err := h.Validate(); err != nil {
			return err
		}
	}
	if f.PathPrefix != "" {
		if err := CheckPathPrefix(f.PathPrefix); err != nil {
			return err
		}
	}
	f.re = nil
	if f.PathRegex != "" {
		re, err := CompilePathRegex(f.PathRegex)
		if err != nil {
			return err
		}
		f.re = re
	}
	for _, m := range f.Methods {
		if !slices.Contains(Methods, m) {
			return fmt.Errorf("method %q is not an HTTP method; use %s", m, strings.Join(Methods, ", "))
		}
	}
	return nil
}

// Matches reports whether the filter takes a request. Call Compile first.
func (f *Filter) Matches(method, path string, header http.Header) bool {
	met, total := 0, 0
	check := func(ok bool) {
		total++
		if ok {
			met++
		}
	}
	for _, h := range f.Headers {
		check(h.Matches(header))
	}
	if f.PathPrefix != "" {
		check(strings.HasPrefix(path, f.PathPrefix))
	}
	if f.PathRegex != "" {
		check(f.re != nil && f.re.MatchString(path))
	}
	if len(f.Methods) > 0 {
		check(slices.Contains(f.Methods, method))
	}
	if f.Any {
		return met > 0
	}
	return met == total
}

// MatchesRequest is Matches for an incoming request.
func (f *Filter) MatchesRequest(r *http.Request) bool {
	return f.Matches(r.Method, r.URL.Path, r.Header)
}

// SingleHeader returns the header of a filter that is exactly one header
// condition: the rule agents of protocol versions before 4 understand.
func (f *Filter) SingleHeader() *HeaderMatch {
	if f == nil || len(f.Headers) != 1 || f.PathPrefix != "" || f.PathRegex != "" || len(f.Methods) > 0 {
		return nil
	}
	h := f.Headers[0]
	return &h
}

// String describes the rule for people, such as
// "x-dev=alice and path /api/ and method GET,POST"; a single-header rule
// reads NAME=VALUE, as kloop always wrote it.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	var parts []string
	for _, h := range f.Headers {
		parts = append(parts, h.String())
	}
	if f.PathPrefix != "" {
		parts = append(parts, "path "+f.PathPrefix)
	}
	if f.PathRegex != "" {
		parts = append(parts, "path ~ "+f.PathRegex)
	}
	if len(f.Methods) > 0 {
		parts = append(parts, "method "+strings.Join(f.Methods, ","))
	}
	sep := " and "
	if f.Any {
		sep = " or "
	}
	return strings.Join(parts, sep)
}

// Same reports whether two rules select exactly the same requests by their
// spelling: header names compared without case, lists in any order. Nil
// (global) is the same only as nil.
func (f *Filter) Same(g *Filter) bool {
	if f == nil || g == nil {
		return f == g
	}
	return f.key() == g.key()
}

func (f *Filter) key() string {
	hs := make([]string, 0, len(f.Headers))
	for _, h := range f.Headers {
		hs = append(hs, strings.ToLower(h.Name)+"="+h.Value)
	}
	slices.Sort(hs)
	ms := slices.Clone(f.Methods)
	slices.Sort(ms)
	n := len(hs)
	for _, set := range []bool{f.PathPrefix != "", f.PathRegex != "", len(ms) > 0} {
		if set {
			n++
		}
	}
	// With one condition all and any mean the same.
	mode := f.Any && n > 1
	return fmt.Sprintf("%q|%q|%q|%q|%v", hs, f.PathPrefix, f.PathRegex, ms, mode)
}
