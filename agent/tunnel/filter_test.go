package tunnel

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestNewFilterRefusesBadRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec RuleSpec
		want string // substring of the error
	}{
		{"regex unclosed bracket", RuleSpec{PathRegex: "^/v[0-9+/orders"}, `at offset 3: missing closing ]: "[0-9+/orders"`},
		{"regex unclosed group", RuleSpec{PathRegex: "^/(v1|v2/orders"}, `at offset 0: missing closing )`},
		{"regex bad repeat", RuleSpec{PathRegex: "/orders/**"}, `at offset 8: invalid nested repetition operator: "**"`},
		{"regex bad escape", RuleSpec{PathRegex: `^/a\q`}, `at offset 3: invalid escape sequence: "\\q"`},
		{"match not all or any", RuleSpec{Path: "/x", Match: "bogus"}, `match "bogus" is not all or any`},
		{"method typo", RuleSpec{Method: []string{"GET,GTE"}}, `method "GTE" (item 2 of "GET,GTE") is not an HTTP method; use GET, HEAD`},
		{"method empty item", RuleSpec{Method: []string{"GET,"}}, `has an empty item (item 2 of "GET,")`},
		{"method alone", RuleSpec{Method: []string{"FETCH"}}, `method "FETCH" is not an HTTP method`},
		{"header name", RuleSpec{Header: map[string]string{"x dev": "me"}}, `header name "x dev" is not a valid HTTP header name`},
		{"header empty value", RuleSpec{Header: map[string]string{"x-dev": ""}}, `the value is empty`},
		{"header line break", RuleSpec{Header: map[string]string{"x-dev": "a\nb"}}, `characters HTTP cannot carry`},
		{"path without slash", RuleSpec{Path: "api/"}, `path "api/" must start with /`},
		{"match alone", RuleSpec{Match: "any"}, `the filter has no condition`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewFilter(%+v) = %v, %v; want an error containing %q", tc.spec, f, err, tc.want)
			}
		})
	}
}

func TestPathRegexErrorCarriesOffset(t *testing.T) {
	_, err := NewFilter(RuleSpec{PathRegex: "^/v[0-9]+/(orders"})
	var re *RegexError
	if !errors.As(err, &re) || re.Offset != 0 {
		t.Fatalf("error %v; want a RegexError at offset 0", err)
	}
	_, err = NewFilter(RuleSpec{PathRegex: "^/ok/x{2,1}"})
	if !errors.As(err, &re) || re.Offset != 6 {
		t.Fatalf("error %v; want a RegexError at offset 6 (the x{2,1})", err)
	}
}

func TestFilterMatches(t *testing.T) {
	alice := http.Header{"X-Dev": {"alice"}}
	none := http.Header{}
	for _, tc := range []struct {
		name   string
		spec   RuleSpec
		method string
		path   string
		header http.Header
		want   bool
	}{
		{"prefix hit", RuleSpec{Path: "/api/"}, "GET", "/api/orders", none, true},
		{"prefix miss", RuleSpec{Path: "/api/"}, "GET", "/apix", none, false},
		{"prefix is not a regex", RuleSpec{Path: "/a.c"}, "GET", "/abc", none, false},
		{"regex hit", RuleSpec{PathRegex: "^/v[0-9]+/orders"}, "GET", "/v12/orders/7", none, true},
		{"regex miss", RuleSpec{PathRegex: "^/v[0-9]+/orders"}, "GET", "/vx/orders", none, false},
		{"regex unanchored searches", RuleSpec{PathRegex: "orders$"}, "GET", "/a/orders", none, true},
		{"method in list", RuleSpec{Method: []string{"get,Post"}}, "POST", "/", none, true},
		{"method not in list", RuleSpec{Method: []string{"GET", "POST"}}, "DELETE", "/", none, false},
		{"all: every condition", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Method: []string{"GET"}}, "GET", "/api/x", alice, true},
		{"all: header missing", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Method: []string{"GET"}}, "GET", "/api/x", none, false},
		{"all: wrong method", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Method: []string{"GET"}}, "PUT", "/api/x", alice, false},
		{"all: two headers, one present", RuleSpec{Header: map[string]string{"x-dev": "alice", "x-team": "pay"}}, "GET", "/", alice, false},
		{"all: two headers, both present", RuleSpec{Header: map[string]string{"x-dev": "alice", "x-team": "pay"}}, "GET", "/", http.Header{"X-Dev": {"alice"}, "X-Team": {"pay"}}, true},
		{"any: only header", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Match: "any"}, "GET", "/other", alice, true},
		{"any: only path", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Match: "any"}, "GET", "/api/", none, true},
		{"any: none", RuleSpec{Header: map[string]string{"x-dev": "alice"}, Path: "/api/", Match: "any"}, "GET", "/other", none, false},
		{"header value exact", RuleSpec{Header: map[string]string{"x-dev": "alice"}}, "GET", "/", http.Header{"X-Dev": {"alice2"}}, false},
		{"header name any case", RuleSpec{Header: map[string]string{"X-DEV": "alice"}}, "GET", "/", alice, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Matches(tc.method, tc.path, tc.header); got != tc.want {
				t.Errorf("%s matches %s %s %v = %v; want %v", f, tc.method, tc.path, tc.header, got, tc.want)
			}
		})
	}
}

func TestFilterSameAndString(t *testing.T) {
	mk := func(s RuleSpec) *Filter {
		t.Helper()
		f, err := NewFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := mk(RuleSpec{Header: map[string]string{"X-Dev": "me"}, Method: []string{"POST,GET"}})
	b := mk(RuleSpec{Header: map[string]string{"x-dev": "me"}, Method: []string{"GET", "POST"}})
	if !a.Same(b) {
		t.Errorf("%s and %s select the same requests; Same says no", a, b)
	}
	if c := mk(RuleSpec{Header: map[string]string{"x-dev": "me"}, Method: []string{"GET", "POST"}, Match: "any"}); a.Same(c) {
		t.Errorf("%s and %s differ (all, any); Same says yes", a, c)
	}
	if one, oneAny := mk(RuleSpec{Path: "/a"}), mk(RuleSpec{Path: "/a", Match: "any"}); !one.Same(oneAny) {
		t.Errorf("with one condition, all and any are the same rule")
	}
	if got := mk(RuleSpec{Header: map[string]string{"x-dev": "me"}}).String(); got != "x-dev=me" {
		t.Errorf("a one-header rule reads %q; want x-dev=me as before filters", got)
	}
	if got, want := mk(RuleSpec{Path: "/api/", PathRegex: "^/v1", Method: []string{"GET"}, Match: "any"}).String(), "path /api/ or path ~ ^/v1 or method GET"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	if f, err := NewFilter(RuleSpec{}); f != nil || err != nil {
		t.Errorf("no condition: %v, %v; want nil (a global intercept)", f, err)
	}
}
