package workload

import (
	"encoding/json"
	"strings"
	"testing"
)

const nameRule = "is not a Kubernetes object name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"

func TestParse(t *testing.T) {
	deploy := func(name string) Workload { return Workload{Deployment, name} }
	sts := func(name string) Workload { return Workload{StatefulSet, name} }
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		in      string
		want    Workload
		wantErr string
	}{
		// A bare name is a Deployment.
		{in: "orders", want: deploy("orders")},
		{in: "db-0.x", want: deploy("db-0.x")},
		{in: "0", want: deploy("0")},
		{in: long, want: deploy(long)},
		{in: "deployments.apps", want: deploy("deployments.apps")}, // a name, not a kind

		// Every resource name, with group and with version and group.
		{in: "deployment/orders", want: deploy("orders")},
		{in: "deployments/orders", want: deploy("orders")},
		{in: "deploy/orders", want: deploy("orders")},
		{in: "deployment.apps/orders", want: deploy("orders")},
		{in: "deployments.apps/orders", want: deploy("orders")},
		{in: "deploy.apps/orders", want: deploy("orders")},
		{in: "deployment.v1.apps/orders", want: deploy("orders")},
		{in: "deployments.v1.apps/orders", want: deploy("orders")},
		{in: "deploy.v1.apps/orders", want: deploy("orders")},
		{in: "statefulset/db", want: sts("db")},
		{in: "statefulsets/db", want: sts("db")},
		{in: "sts/db", want: sts("db")},
		{in: "statefulset.apps/db", want: sts("db")},
		{in: "statefulsets.apps/db", want: sts("db")},
		{in: "sts.apps/db", want: sts("db")},
		{in: "statefulset.v1.apps/db", want: sts("db")},
		{in: "statefulsets.v1.apps/db", want: sts("db")},
		{in: "sts.v1.apps/db", want: sts("db")},
		{in: "deployment/" + long, want: deploy(long)},

		// Full resource names in any case, as kubectl lowercases them.
		{in: "Deployment/orders", want: deploy("orders")},
		{in: "DEPLOYMENT/orders", want: deploy("orders")},
		{in: "dEPLOYMENTS/orders", want: deploy("orders")},
		{in: "Deployment.apps/orders", want: deploy("orders")},
		{in: "Deployments.v1.apps/orders", want: deploy("orders")},
		{in: "StatefulSet/db", want: sts("db")},
		{in: "STATEFULSETS.apps/db", want: sts("db")},
		{in: "StatefulSet.v1.apps/db", want: sts("db")},

		// Empty parts.
		{in: "", wantErr: "workload is empty: write deployment/NAME, statefulset/NAME or NAME"},
		{in: "/orders", wantErr: `workload "/orders": kind must be deployment or statefulset`},
		{in: "/", wantErr: `workload "/": kind must be deployment or statefulset`},
		{in: "deployment/", wantErr: `workload "deployment/": name is empty`},
		{in: "sts.apps/", wantErr: `workload "sts.apps/": name is empty`},

		// Kinds kloop does not intercept, and misspellings.
		{in: "foo/bar", wantErr: `workload "foo/bar": kind must be deployment or statefulset`},
		{in: "daemonset/orders", wantErr: `workload "daemonset/orders": kind must be deployment or statefulset`},
		{in: "pod/orders", wantErr: `workload "pod/orders": kind must be deployment or statefulset`},
		{in: "deploys/orders", wantErr: `workload "deploys/orders": kind must be deployment or statefulset`},
		{in: "deploymen/orders", wantErr: `workload "deploymen/orders": kind must be deployment or statefulset`},
		{in: "stss/db", wantErr: `workload "stss/db": kind must be deployment or statefulset`},
		{in: "deployment /orders", wantErr: `workload "deployment /orders": kind must be deployment or statefulset`},
		{in: " deployment/orders", wantErr: `workload " deployment/orders": kind must be deployment or statefulset`},
		{in: "ſts/db", wantErr: `workload "ſts/db": kind must be deployment or statefulset`}, // ſ is not s, to kubectl either

		// kubectl matches short names and the group exactly.
		{in: "Deploy/orders", wantErr: `workload "Deploy/orders": kind must be lowercase: deployment/orders`},
		{in: "DEPLOY/orders", wantErr: `workload "DEPLOY/orders": kind must be lowercase: deployment/orders`},
		{in: "STS/db", wantErr: `workload "STS/db": kind must be lowercase: statefulset/db`},
		{in: "Sts.apps/db", wantErr: `workload "Sts.apps/db": kind must be lowercase: statefulset/db`},
		{in: "deployment.APPS/orders", wantErr: `workload "deployment.APPS/orders": kind must be lowercase: deployment/orders`},
		{in: "Deployment.V1.apps/orders", wantErr: `workload "Deployment.V1.apps/orders": kind must be lowercase: deployment/orders`},

		// Other groups and versions, including ones kubectl happens to
		// resolve by prefix (deploy.app, deployment.) or by ignoring the
		// version of a short name (deploy.v1beta1.apps).
		{in: "deployments.extensions/orders", wantErr: `workload "deployments.extensions/orders": ".extensions" is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "deployment.v1/orders", wantErr: `workload "deployment.v1/orders": ".v1" is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "deployment.apps.v1/orders", wantErr: `workload "deployment.apps.v1/orders": ".apps.v1" is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "deploy.v1beta1.apps/orders", wantErr: `workload "deploy.v1beta1.apps/orders": ".v1beta1.apps" is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "deploy.app/orders", wantErr: `workload "deploy.app/orders": ".app" is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "Deployment./orders", wantErr: `workload "Deployment./orders": "." is not the API group of deployments: write deployment/orders, deployment.apps/orders or deployment.v1.apps/orders`},
		{in: "STS.a/db", wantErr: `workload "STS.a/db": ".a" is not the API group of statefulsets: write statefulset/db, statefulset.apps/db or statefulset.v1.apps/db`},

		// Names.
		{in: "deployment/a/b", wantErr: `workload "deployment/a/b": name "a/b" ` + nameRule},
		{in: "Orders", wantErr: `workload "Orders": name "Orders" ` + nameRule},
		{in: "deployment/Orders", wantErr: `workload "deployment/Orders": name "Orders" ` + nameRule},
		{in: "orders-", wantErr: `workload "orders-": name "orders-" ` + nameRule},
		{in: "-orders", wantErr: `workload "-orders": name "-orders" ` + nameRule},
		{in: "a..b", wantErr: `workload "a..b": name "a..b" ` + nameRule},
		{in: "orders_v2", wantErr: `workload "orders_v2": name "orders_v2" ` + nameRule},
		{in: "orders ", wantErr: `workload "orders ": name "orders " ` + nameRule},
		{in: long + "a", wantErr: `workload "` + long + `a": name is longer than 253 characters`},
		{in: "sts/" + long + "a", wantErr: `workload "sts/` + long + `a": name is longer than 253 characters`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Parse(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			// The canonical form reads back as the same workload.
			if again, err := Parse(got.String()); err != nil || again != got {
				t.Errorf("Parse(%q) = %v, %v; want %v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseSpellings(t *testing.T) {
	var got []string
	for _, sp := range Spellings() {
		got = append(got, sp.String())
		k, ok := kindOf(sp.String())
		if !ok || k != sp.Kind {
			t.Errorf("kindOf(%q) = %q, %v; want %q", sp, k, ok, sp.Kind)
		}
		if title := strings.ToUpper(sp.Resource[:1]) + sp.Resource[1:] + sp.Suffix; sp.AnyCase {
			if k, ok := kindOf(title); !ok || k != sp.Kind {
				t.Errorf("kindOf(%q) = %q, %v; want %q", title, k, ok, sp.Kind)
			}
		} else if _, ok := kindOf(title); ok {
			t.Errorf("kindOf(%q) accepted a short name not in lowercase", title)
		}
	}
	want := "deployment deployment.apps deployment.v1.apps deployments deployments.apps deployments.v1.apps deploy deploy.apps deploy.v1.apps " +
		"statefulset statefulset.apps statefulset.v1.apps statefulsets statefulsets.apps statefulsets.v1.apps sts sts.apps sts.v1.apps"
	if strings.Join(got, " ") != want {
		t.Errorf("Spellings() = %s\nwant %s", strings.Join(got, " "), want)
	}
	s := Spellings()
	s[0].Resource = "changed"
	if Spellings()[0].Resource != "deployment" {
		t.Error("Spellings returns the package's own slice")
	}
}

func TestWorkloadKind(t *testing.T) {
	for _, tt := range []struct {
		k                       Kind
		title, plural, resource string
		valid                   bool
	}{
		{Deployment, "Deployment", "deployments", "deployments.apps", true},
		{StatefulSet, "StatefulSet", "statefulsets", "statefulsets.apps", true},
		{"daemonset", "", "", "", false},
		{"", "", "", "", false},
	} {
		if got := tt.k.Title(); got != tt.title {
			t.Errorf("%q.Title() = %q, want %q", tt.k, got, tt.title)
		}
		if got := tt.k.Plural(); got != tt.plural {
			t.Errorf("%q.Plural() = %q, want %q", tt.k, got, tt.plural)
		}
		if got := tt.k.Resource(); got != tt.resource {
			t.Errorf("%q.Resource() = %q, want %q", tt.k, got, tt.resource)
		}
		if got := tt.k.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v, want %v", tt.k, got, tt.valid)
		}
	}
}

func TestWorkloadStringAndZero(t *testing.T) {
	if s := (Workload{}).String(); s != "" || !(Workload{}).IsZero() {
		t.Errorf("zero Workload: String() = %q, IsZero() = %v", s, (Workload{}).IsZero())
	}
	w := Workload{StatefulSet, "db"}
	if w.String() != "statefulset/db" || w.IsZero() {
		t.Errorf("%#v: String() = %q, IsZero() = %v", w, w.String(), w.IsZero())
	}
}

// The daemon and `-o json` carry workloads as JSON strings in canonical form.
func TestWorkloadJSON(t *testing.T) {
	type doc struct {
		W Workload `json:"w"`
	}
	b, err := json.Marshal(doc{Workload{StatefulSet, "db"}})
	if err != nil || string(b) != `{"w":"statefulset/db"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"w":"Deployments.apps/orders"}`), &d); err != nil || d.W != (Workload{Deployment, "orders"}) {
		t.Errorf("json.Unmarshal = %v, %v", d.W, err)
	}
	if err := json.Unmarshal([]byte(`{"w":"daemonset/x"}`), &d); err == nil || !strings.Contains(err.Error(), `workload "daemonset/x": kind must be deployment or statefulset`) {
		t.Errorf("json.Unmarshal of daemonset/x: %v", err)
	}
}
