package workload_test

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/workload"
)

// kubectlSpellings returns every kind spelling `kubectl get TYPE/NAME` reads
// for a Deployment or StatefulSet (checked against kubectl 1.32 on the
// sandbox cluster): each spelling of workload.Spellings, and the full
// resource names in every mix of upper and lower case.
func kubectlSpellings() map[string]workload.Kind {
	out := map[string]workload.Kind{}
	for _, sp := range workload.Spellings() {
		if !sp.AnyCase {
			out[sp.String()] = sp.Kind
			continue
		}
		r := sp.Resource
		for mask := 0; mask < 1<<len(r); mask++ {
			b := []byte(r)
			for i := range b {
				if mask&(1<<i) != 0 {
					b[i] -= 'a' - 'A'
				}
			}
			out[string(b)+sp.Suffix] = sp.Kind
		}
	}
	return out
}

// refusedKinds are spellings that must be refused everywhere: other kinds,
// misspellings, short names or groups not in lowercase (kubectl refuses
// them too), and other groups and versions (some of which kubectl resolves
// by accident: deploy.app by group prefix, deploy.v1beta1.apps by ignoring
// the version of a short name).
var refusedKinds = []string{
	"", " ", "daemonset", "replicaset", "pod", "pods", "deploys", "deploymen", "deployment ", " deployment", "statefulsetss", "stss",
	"Deploy", "DEPLOY", "dePloy", "Sts", "STS", "sTs", "Deploy.apps", "STS.v1.apps",
	"deployment.APPS", "Deployment.Apps", "deployments.V1.apps", "sts.v1.APPS", "deploy.V1.apps",
	"deployment.extensions", "deployments.v1", "deployment.apps.v1", "deployments.v1beta1.apps", "deploy.v1beta1.apps",
	"deployment.app", "deploy.a", "sts.", "Deployment.", "statefulset.v1.ap", "apps", "v1.apps", ".apps",
	"ſts", "deployment\u212a", "DEPLOYMENT\u0130", "deployment/x",
}

// names covers valid names (short, dotted, the longest) and invalid ones.
var names = []string{
	"orders", "a", "0", "db-0.x", strings.Repeat("a", workload.MaxNameLen),
	"", "Orders", "orders-", "-orders", "a..b", "a_b", "a b", strings.Repeat("a", workload.MaxNameLen+1),
}

// schemaPattern reads the workload pattern from the committed JSON Schema,
// the file editors use.
func schemaPattern(t *testing.T) *regexp.Regexp {
	t.Helper()
	raw, err := os.ReadFile("../../config/" + config.SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			Intercepts struct {
				Items struct {
					Properties struct {
						Workload struct {
							Pattern string `json:"pattern"`
						} `json:"workload"`
					} `json:"properties"`
				} `json:"items"`
			} `json:"intercepts"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	p := s.Properties.Intercepts.Items.Properties.Workload.Pattern
	if p == "" {
		t.Fatalf("config/%s has no pattern at properties.intercepts.items.properties.workload", config.SchemaFile)
	}
	return regexp.MustCompile(p)
}

// TestEveryEntryPointAgrees feeds every spelling kubectl accepts for the two
// kinds, and many it does not, to each parser a workload reaches kloop
// through, and checks that they give the same canonical workload or the
// same refusal:
//
//   - workload.Parse (the CLI, the LSP and DAP commands, kube/env and
//     kube/intercept call it);
//   - the .kloop.yaml parser, config.Parse of "workload: SPELLING";
//   - JSON, as the daemon carries intercepts (config.Intercept);
//   - the JSON Schema pattern editors check .kloop.yaml with, compiled with
//     Go's regexp: it must match exactly what Parse accepts, except that the
//     name length limit is the parser's alone.
func TestEveryEntryPointParsesAlike(t *testing.T) {
	pattern := schemaPattern(t)
	accepted := kubectlSpellings()
	if len(accepted) < 18 {
		t.Fatalf("only %d spellings", len(accepted))
	}
	type input struct {
		s    string
		want workload.Workload // zero: refused
	}
	var inputs []input
	for kind, k := range accepted {
		inputs = append(inputs, input{kind + "/orders", workload.Workload{Kind: k, Name: "orders"}})
	}
	for _, kind := range refusedKinds {
		if _, ok := accepted[kind]; ok {
			t.Fatalf("refused kind %q is in kubectlSpellings", kind)
		}
		inputs = append(inputs, input{s: kind + "/orders"})
	}
	for _, name := range names {
		want := func(k workload.Kind) workload.Workload {
			if name == "" || len(name) > workload.MaxNameLen || !regexp.MustCompile(`^`+workload.NamePattern+`$`).MatchString(name) {
				return workload.Workload{}
			}
			return workload.Workload{Kind: k, Name: name}
		}
		inputs = append(inputs,
			input{name, want(workload.Deployment)},
			input{"deployment/" + name, want(workload.Deployment)},
			input{"StatefulSets.v1.apps/" + name, want(workload.StatefulSet)},
			input{"sts/" + name, want(workload.StatefulSet)},
		)
	}

	for _, in := range inputs {
		// workload.Parse
		got, perr := workload.Parse(in.s)
		if in.want.IsZero() {
			if perr == nil {
				t.Errorf("workload.Parse(%q) = %v, want a refusal", in.s, got)
				continue
			}
		} else if perr != nil || got != in.want {
			t.Errorf("workload.Parse(%q) = %v, %v; want %v", in.s, got, perr, in.want)
			continue
		}

		// config.Parse of .kloop.yaml
		doc, err := yaml.Marshal(map[string]any{"intercepts": []map[string]string{{"name": "t", "workload": in.s}}})
		if err != nil {
			t.Fatal(err)
		}
		cfg, cerr := config.Parse("x.yaml", doc)
		if perr == nil {
			if cerr != nil || len(cfg.Intercepts) != 1 || cfg.Intercepts[0].Workload != got {
				t.Errorf(".kloop.yaml with workload %q: %v; workload.Parse gives %v", in.s, cerr, got)
			}
		} else {
			var errs *config.Errors
			if !errors.As(cerr, &errs) || len(errs.List) != 1 || errs.List[0].Field != "intercepts[0].workload" || errs.List[0].Message != perr.Error() {
				t.Errorf(".kloop.yaml with workload %q: error %v; want one error on intercepts[0].workload saying %q", in.s, cerr, perr)
			}
		}

		// JSON, as the daemon carries intercepts.
		js, _ := json.Marshal(map[string]string{"workload": in.s})
		var ic config.Intercept
		jerr := json.Unmarshal(js, &ic)
		if perr == nil && (jerr != nil || ic.Workload != got) || perr != nil && (jerr == nil || jerr.Error() != perr.Error()) {
			t.Errorf("JSON workload %q: %v, %v; workload.Parse gives %v, %v", in.s, ic.Workload, jerr, got, perr)
		}

		// The JSON Schema pattern.
		match := pattern.MatchString(in.s)
		lengthOnly := perr != nil && strings.HasSuffix(perr.Error(), "name is longer than 253 characters")
		if match != (perr == nil) && !(lengthOnly && match) {
			t.Errorf("schema pattern matches %q: %v; workload.Parse error: %v", in.s, match, perr)
		}
	}
}

// The canonical form of every accepted spelling is the same whichever
// spelling it came from, and is itself accepted everywhere.
func TestParseCanonicalForm(t *testing.T) {
	pattern := schemaPattern(t)
	for kind, k := range kubectlSpellings() {
		w, err := workload.Parse(kind + "/orders")
		if err != nil {
			t.Fatal(err)
		}
		want := string(k) + "/orders"
		if w.String() != want {
			t.Errorf("Parse(%q).String() = %q, want %q", kind+"/orders", w, want)
		}
		if !pattern.MatchString(w.String()) {
			t.Errorf("schema pattern does not match the canonical %q", w)
		}
	}
}
