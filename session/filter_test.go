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

// More ports map each container port to its own local port; a second port
// without a first, or one given twice, is refused saying what to write.
func TestPlanInterceptExtraPorts(t *testing.T) {
	cfg := config.Default()
	p, err := planIntercept(cfg, InterceptArgs{Workload: "orders", Port: "8080:18080", Ports: []string{"9090:19090", "7070"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.remote != 8080 || p.local != 18080 || p.extra[9090] != 19090 || p.extra[7070] != 7070 || len(p.extra) != 2 {
		t.Errorf("plan ports %d->%d and %v; want 8080->18080, 9090->19090, 7070->7070", p.remote, p.local, p.extra)
	}
	for _, tc := range []struct {
		args InterceptArgs
		want string
	}{
		{InterceptArgs{Workload: "orders", Ports: []string{"9090"}}, "give the main port first, as --port 8080 --port 9090"},
		{InterceptArgs{Workload: "orders", Port: "8080", Ports: []string{"9090", "9090:1"}}, "container port 9090 is given twice"},
		{InterceptArgs{Workload: "orders", Port: "8080", Ports: []string{"8080:1"}}, "container port 8080 is given twice"},
		{InterceptArgs{Workload: "orders", Port: "8080", Ports: []string{"0"}}, "out of range"},
	} {
		if _, err := planIntercept(cfg, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ports %q %q: %v; want an error containing %q", tc.args.Port, tc.args.Ports, err, tc.want)
		}
	}
}
