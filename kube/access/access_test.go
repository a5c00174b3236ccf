package access

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRuleString(t *testing.T) {
	tests := []struct {
		rule Rule
		want string
	}{
		{Rule{Resource: "pods", Verbs: []string{"list", "watch"}}, "list,watch pods"},
		{Rule{Resource: "pods/portforward", Verbs: []string{"create"}}, "create pods/portforward"},
		{Rule{Group: "apps", Resource: "deployments", Verbs: []string{"update"}}, "update deployments.apps"},
		{Rule{Group: "apps", Resource: "deployments/scale", Verbs: []string{"get"}}, "get deployments.apps/scale"},
	}
	for _, tt := range tests {
		if got := tt.rule.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.rule, got, tt.want)
		}
	}
}

func TestMissingSummaryGroupsByResource(t *testing.T) {
	tests := []struct {
		name    string
		missing []Missing
		want    string
	}{
		{"none", nil, ""},
		{"one", []Missing{{Rule: Rule{Resource: "secrets", Verbs: []string{"create"}}}}, "create secrets"},
		{"two verbs of one resource and another", []Missing{
			{Rule: Rule{Group: "apps", Resource: "deployments", Verbs: []string{"get"}}},
			{Rule: Rule{Resource: "pods/portforward", Verbs: []string{"create"}}},
			{Rule: Rule{Group: "apps", Resource: "deployments", Verbs: []string{"update"}}},
		}, "get,update deployments.apps; create pods/portforward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Result{Missing: tt.missing}
			if got := r.MissingSummary(); got != tt.want {
				t.Errorf("MissingSummary() = %q, want %q", got, tt.want)
			}
			if r.OK() != (len(tt.missing) == 0) {
				t.Errorf("OK() = %v with %d missing", r.OK(), len(tt.missing))
			}
		})
	}
}

type manifestRule struct {
	APIGroups []string `yaml:"apiGroups"`
	Resources []string `yaml:"resources"`
	Verbs     []string `yaml:"verbs"`
}

type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Rules []manifestRule `yaml:"rules"`
}

// roleRules reads the rules of the Role named name in a deploy/ manifest,
// flattened to one (group, resource) each, verbs sorted.
func roleRules(t *testing.T, file, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var m manifest
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if m.Kind != "Role" || m.Metadata.Name != name {
			continue
		}
		out := map[string][]string{}
		for _, r := range m.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					k := g + "/" + res
					out[k] = append(out[k], r.Verbs...)
					slices.Sort(out[k])
				}
			}
		}
		return out
	}
	t.Fatalf("%s has no Role %s", file, name)
	return nil
}

// TestDeployRolesGrantExactlyWhatKloopNeeds: the Roles an admin applies
// from deploy/ grant each feature's rules, no more and no less, so `kloop
// doctor` and the Forbidden errors name a Role that fixes them.
func TestDeployRolesGrantExactlyWhatKloopNeeds(t *testing.T) {
	for _, f := range []Feature{Intercept(), Claim()} {
		t.Run(f.Name, func(t *testing.T) {
			got := roleRules(t, f.Role.File, f.Role.Name)
			want := map[string][]string{}
			for _, r := range f.Rules {
				want[r.Group+"/"+r.Resource] = f.Verbs(r.Group, r.Resource)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Role %s in %s grants %v; kloop needs %v", f.Role.Name, f.Role.File, got, want)
			}
		})
	}
}
