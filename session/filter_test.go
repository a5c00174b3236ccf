package session

import (
	"slices"
	"strings"
	"testing"

	"github.com/kloop/kloop/config"
)

// The rule of .kloop.yaml applies unless the command gives one, and then
// the command's replaces it whole: --path does not add to the file's
// header, so what the user typed is what routes.
func TestPlanInterceptRule(t *testing.T) {
	cfg, err := config.Parse(".kloop.yaml", []byte("intercepts:\n  - workload: orders\n    header: {x-dev: me}\n    method: [GET]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args InterceptArgs
		want string // the rule's description; "" is global
	}{
		{"the file's rule", InterceptArgs{Workload: "orders"}, "x-dev=me and method GET"},
		{"the command's path replaces it", InterceptArgs{Workload: "orders", Path: "/api/"}, "path /api/"},
		{"the command's headers and any", InterceptArgs{Workload: "orders", Header: map[string]string{"x-a": "1", "x-b": "2"}, Match: "any"}, "x-a=1 or x-b=2"},
		{"no file entry, no rule: global", InterceptArgs{Workload: "users"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planIntercept(cfg, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.filter.String(); got != tc.want {
				t.Errorf("rule %q; want %q", got, tc.want)
			}
		})
	}
	_, err = planIntercept(cfg, InterceptArgs{Workload: "orders", PathRegex: "^/(a"})
	if err == nil || !strings.Contains(err.Error(), `intercept deployment/orders: path regex "^/(a" at offset 0`) {
		t.Errorf("a bad regex: %v; want refused naming the workload and the offset", err)
	}
}

// The command's outbound rules add to the file's, and a bad one is refused
// before anything touches the workload.
func TestPlanInterceptOutbound(t *testing.T) {
	cfg, err := config.Parse(".kloop.yaml", []byte("intercepts:\n  - workload: orders\n    outbound: {include: [\"*.internal\"], exclude: [users]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := planIntercept(cfg, InterceptArgs{Workload: "orders", Outbound: OutboundRules{Exclude: []string{"10.0.0.0/8"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := OutboundRules{Include: []string{"*.internal"}, Exclude: []string{"users", "10.0.0.0/8"}}
	if !slices.Equal(p.outbound.Include, want.Include) || !slices.Equal(p.outbound.Exclude, want.Exclude) {
		t.Errorf("outbound %+v; want %+v", p.outbound, want)
	}
	if len(cfg.Intercepts[0].Outbound.Exclude) != 1 {
		t.Errorf("planning changed the file's rules: %+v", cfg.Intercepts[0].Outbound)
	}
	_, err = planIntercept(cfg, InterceptArgs{Workload: "orders", Outbound: OutboundRules{Include: []string{"users:http"}}})
	if err == nil || !strings.Contains(err.Error(), `intercept deployment/orders: outbound include: outbound rule "users:http": port "http"`) {
		t.Errorf("a bad rule: %v; want refused naming the workload and the rule", err)
	}
}
