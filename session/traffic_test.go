package session

import (
	"strings"
	"testing"

	"github.com/kloop/kloop/config"
)

func TestParseTraffic(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: "steal"},
		{in: "steal", want: "steal"},
		{in: "mirror", want: "mirror"},
		{in: "none", want: "none"},
		// Spelled as .kloop.yaml and the schema's enum spell it.
		{in: "Steal", err: `traffic "Steal" is not one of steal, mirror, none; leave it out for steal`},
		{in: "stael", err: `traffic "stael" is not one of steal, mirror, none; leave it out for steal`},
	} {
		got, err := ParseTraffic(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTraffic(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("ParseTraffic(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// Traffic none receives no requests, so whatever shapes them is refused
// wherever it was set, naming it as the user wrote it: the file's key and
// the command's flag.
func TestPlanInterceptRefusesRulesWithoutTraffic(t *testing.T) {
	cfg, err := config.Parse(".kloop.yaml", []byte("intercepts:\n  - workload: orders\n    header: {x-dev: me}\n  - workload: users\n    traffic: none\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args InterceptArgs
		err  string // "" is accepted
	}{
		{"none from the file", InterceptArgs{Workload: "users"}, ""},
		{"none from the command", InterceptArgs{Workload: "payments", Traffic: "none", Port: "8080"}, ""},
		{"the command's header", InterceptArgs{Workload: "users", Header: map[string]string{"x-dev": "me"}},
			"intercept deployment/users: traffic none receives no requests, so header (--header) would do nothing: remove it, or use traffic steal"},
		{"the file's header with --traffic none", InterceptArgs{Workload: "orders", Traffic: "none"},
			"so header (--header) would do nothing"},
		{"path, method and replay on save", InterceptArgs{Workload: "users", PathRegex: "^/a", Method: []string{"GET"}, ReplayOnSave: true},
			"so pathRegex (--path-regex), method (--method), replayOnSave (--replay-on-save) would do nothing"},
		{"outbound rules", InterceptArgs{Workload: "users", Outbound: OutboundRules{Exclude: []string{"*.corp"}}},
			"traffic none has no agent in a pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planIntercept(cfg, tc.args)
			if tc.err == "" {
				if err != nil || p.traffic != TrafficNone {
					t.Fatalf("planIntercept = %+v, %v; want traffic none", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("planIntercept: %v; want an error containing %q", err, tc.err)
			}
		})
	}
}
