// Package workload is the one name of a Deployment or StatefulSet that every
// part of kloop uses: the .kloop.yaml parser and its JSON Schema, the CLI, the
// LSP and DAP commands, env resolution (kube/env) and intercepts
// (kube/intercept) all read a workload with Parse and write it with String,
// so a user gets the same answer for a spelling wherever they type it.
//
// Parse reads what `kubectl get TYPE/NAME` reads for these two kinds (see
// Spellings), plus a bare NAME meaning a Deployment. The package imports no
// client-go, so that package config stays cheap to import.
package workload

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is the kind of a workload, in its canonical lowercase form.
type Kind string

// The kinds kloop works with.
const (
	Deployment  Kind = "deployment"
	StatefulSet Kind = "statefulset"
)

// Title returns the Kubernetes kind, as in an object's "kind:" field and in
// owner references: "Deployment" or "StatefulSet"; "" for an unknown kind.
func (k Kind) Title() string {
	switch k {
	case Deployment:
		return "Deployment"
	case StatefulSet:
		return "StatefulSet"
	}
	return ""
}

// Plural returns the resource name: "deployments" or "statefulsets"; "" for
// an unknown kind.
func (k Kind) Plural() string {
	if !k.Valid() {
		return ""
	}
	return string(k) + "s"
}

// Resource returns the resource with its API group, as kubectl and RBAC
// errors name it: "deployments.apps" or "statefulsets.apps"; "" for an
// unknown kind.
func (k Kind) Resource() string {
	if !k.Valid() {
		return ""
	}
	return k.Plural() + "." + Group
}

// Valid reports whether k is Deployment or StatefulSet.
func (k Kind) Valid() bool { return k == Deployment || k == StatefulSet }

// Group and Version are the API group and version of both kinds.
const (
	Group   = "apps"
	Version = "v1"
)

// MaxNameLen is the longest object name Kubernetes accepts (a DNS-1123
// subdomain).
const MaxNameLen = 253

// NamePattern is the regular expression (without anchors, in the syntax Go
// and ECMAScript share) of a DNS-1123 subdomain, the form of Deployment and
// StatefulSet names; the length limit (MaxNameLen) is checked apart.
const NamePattern = `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`

var nameRE = regexp.MustCompile(`^` + NamePattern + `$`)

// A Spelling is one way to write a kind before the slash of TYPE/NAME, as
// `kubectl get` reads it: a resource name (singular, plural or short) and an
// optional API group, or version and group.
type Spelling struct {
	// Resource is deployment, deployments, deploy, statefulset,
	// statefulsets or sts.
	Resource string
	// Suffix is "", ".apps" (the group) or ".v1.apps" (version and group);
	// always lowercase.
	Suffix string
	Kind   Kind
	// AnyCase reports whether Resource may be written in any mix of upper
	// and lower case (Deployment, DEPLOYMENTS): kubectl lowercases full
	// resource names, but matches short names (deploy, sts) and the suffix
	// exactly.
	AnyCase bool
}

// String returns the spelling in lowercase, such as "deployments.v1.apps".
func (s Spelling) String() string { return s.Resource + s.Suffix }

// resourceNames are the names kubectl knows the two kinds by; short names
// are matched in lowercase only.
var resourceNames = []struct {
	name  string
	kind  Kind
	short bool
}{
	{"deployment", Deployment, false},
	{"deployments", Deployment, false},
	{"deploy", Deployment, true},
	{"statefulset", StatefulSet, false},
	{"statefulsets", StatefulSet, false},
	{"sts", StatefulSet, true},
}

// suffixes are the group and the version.group kubectl reads after a
// resource name.
var suffixes = []string{"", "." + Group, "." + Version + "." + Group}

var spellings = func() []Spelling {
	var out []Spelling
	for _, r := range resourceNames {
		for _, s := range suffixes {
			out = append(out, Spelling{Resource: r.name, Suffix: s, Kind: r.kind, AnyCase: !r.short})
		}
	}
	return out
}()

// Spellings returns every kind spelling Parse accepts before a slash, in
// lowercase; AnyCase tells which may also be written in other cases. The
// JSON Schema of .kloop.yaml builds its pattern from this list.
func Spellings() []Spelling { return append([]Spelling(nil), spellings...) }

// kindOf returns the kind s spells, if it is one of Spellings.
func kindOf(s string) (Kind, bool) {
	res, suf := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		res, suf = s[:i], s[i:]
	}
	for _, sp := range spellings {
		if sp.Suffix == suf && (sp.Resource == res || sp.AnyCase && asciiLower(res) == sp.Resource) {
			return sp.Kind, true
		}
	}
	return "", false
}

// asciiLower lowercases ASCII letters only, so that no other character (the
// Kelvin sign, say) folds into a kind name.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Workload names a Deployment or StatefulSet in a namespace. The zero
// Workload means "not set".
type Workload struct {
	Kind Kind
	Name string
}

// Parse reads a workload the way a user writes it: KIND/NAME, where KIND is
// any of Spellings (deployment, deployments, deploy, statefulset,
// statefulsets, sts, each optionally followed by .apps or .v1.apps; the full
// names in any case, as kubectl reads them), or a bare NAME, which means a
// Deployment. NAME must be a Kubernetes object name (a DNS-1123 subdomain of
// at most 253 characters). The error text is fit to show a user as is: it
// says what is wrong and what to write.
func Parse(s string) (Workload, error) {
	if s == "" {
		return Workload{}, fmt.Errorf("workload is empty: write deployment/NAME, statefulset/NAME or NAME")
	}
	kindText, name, hasKind := strings.Cut(s, "/")
	kind := Deployment
	if !hasKind {
		name = s
	} else {
		k, err := parseKind(s, kindText, name)
		if err != nil {
			return Workload{}, err
		}
		kind = k
	}
	switch {
	case name == "":
		return Workload{}, fmt.Errorf("workload %q: name is empty", s)
	case len(name) > MaxNameLen:
		return Workload{}, fmt.Errorf("workload %q: name is longer than %d characters", s, MaxNameLen)
	case !nameRE.MatchString(name):
		return Workload{}, fmt.Errorf("workload %q: name %q is not a Kubernetes object name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", s, name)
	}
	return Workload{Kind: kind, Name: name}, nil
}

// parseKind reads the KIND of s = KIND/NAME.
func parseKind(s, kindText, name string) (Kind, error) {
	if k, ok := kindOf(kindText); ok {
		return k, nil
	}
	// kubectl reads short names and the group only in lowercase.
	if k, ok := kindOf(asciiLower(kindText)); ok {
		return "", fmt.Errorf("workload %q: kind must be lowercase: %s/%s", s, k, name)
	}
	// A known resource name with a group or version other than apps, v1.
	res, suf, _ := strings.Cut(kindText, ".")
	if k, ok := kindOf(asciiLower(res)); ok {
		return "", fmt.Errorf("workload %q: %q is not the API group of %s: write %s/%s, %s.%s/%s or %s.%s.%s/%s",
			s, "."+suf, k.Plural(), k, name, k, Group, name, k, Version, Group, name)
	}
	return "", fmt.Errorf("workload %q: kind must be deployment or statefulset", s)
}

// String returns the canonical KIND/NAME form, such as deployment/orders;
// "" for the zero Workload.
func (w Workload) String() string {
	if w.IsZero() {
		return ""
	}
	return string(w.Kind) + "/" + w.Name
}

// IsZero reports whether w is unset.
func (w Workload) IsZero() bool { return w == (Workload{}) }

// MarshalText writes the canonical KIND/NAME form, so JSON carries a plain
// string.
func (w Workload) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText parses the forms Parse accepts.
func (w *Workload) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*w = v
	return nil
}
