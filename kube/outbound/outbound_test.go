package outbound

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestClusterDecision(t *testing.T) {
	svc := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
	tests := []struct {
		name             string
		include, exclude []string
		addr             string
		cluster          bool
	}{
		{"single label goes to the cluster", nil, nil, "users:8080", true},
		{"NAME.NS of a known namespace", nil, nil, "users.dev-7:8080", true},
		{"two labels of an unknown namespace stay local", nil, nil, "example.com:443", false},
		{"NAME.NS.svc", nil, nil, "users.other.svc:80", true},
		{"full service name", nil, nil, "users.other.svc.cluster.local:80", true},
		{"trailing dot and case ignored", nil, nil, "Users.Other.SVC.cluster.local.:80", true},
		{"public name stays local", nil, nil, "api.github.com:443", false},
		{"localhost stays local", nil, nil, "localhost:5432", false},
		{"IP in the service CIDR", nil, nil, "10.96.0.10:53", true},
		{"IP outside the service CIDR", nil, nil, "192.168.1.10:80", false},
		{"IPv4-mapped IPv6 in the service CIDR", nil, nil, "[::ffff:10.96.0.10]:53", true},
		{"include glob", []string{"*.internal"}, nil, "db.corp.internal:5432", true},
		{"include glob does not match the bare suffix", []string{"*.internal"}, nil, "internal.example:5432", false},
		{"include CIDR", []string{"172.16.0.0/12"}, nil, "172.20.1.1:80", true},
		{"include CIDR with port, other port", []string{"172.16.0.0/12:443"}, nil, "172.20.1.1:80", false},
		{"include CIDR with port, that port", []string{"172.16.0.0/12:443"}, nil, "172.20.1.1:443", true},
		{"include IPv6 CIDR with port", []string{"[fd00::/8]:443"}, nil, "[fd12::1]:443", true},
		{"exclude a default name", nil, []string{"users"}, "users:8080", false},
		{"exclude only one port", nil, []string{"users:9090"}, "users:8080", true},
		{"exclude beats include", []string{"*.example.com"}, []string{"www.example.com"}, "www.example.com:443", false},
		{"exclude glob over the cluster suffix", nil, []string{"*.svc.cluster.local"}, "users.x.svc.cluster.local:80", false},
		{"exclude the service CIDR", nil, []string{"10.96.0.0/12"}, "10.96.0.10:53", false},
		{"exclude an IP", nil, []string{"10.96.0.10"}, "10.96.0.10:53", false},
		{"question-mark glob", []string{"db-?.corp"}, nil, "db-1.corp:5432", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := New(tt.include, tt.exclude, Options{Namespaces: []string{"dev-7"}, ServiceCIDRs: svc})
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.Cluster(tt.addr); got != tt.cluster {
				t.Errorf("Cluster(%q) = %v, want %v (include %q, exclude %q)", tt.addr, got, tt.cluster, tt.include, tt.exclude)
			}
		})
	}
}

func TestParseRuleRejectsBadInput(t *testing.T) {
	tests := []struct{ rule, wantInErr string }{
		{"", "empty"},
		{"users:", "port"},
		{"users:0", "1 to 65535"},
		{"users:http", "port"},
		{"10.0.0.0/33", "not a CIDR"},
		{"10.0.0.0/8:99999", "1 to 65535"},
		{"[fd00::/8", "without ']'"},
		{"[fd00::1]x", "only :PORT"},
		{"fd00::zz", "IPv6"},
		{"a b", "not a host name"},
		{"db-[1.corp", "not a valid glob"},
	}
	for _, tt := range tests {
		_, err := ParseRule(tt.rule)
		if err == nil {
			t.Errorf("ParseRule(%q) = nil error, want one containing %q", tt.rule, tt.wantInErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantInErr) || !strings.Contains(err.Error(), tt.rule) {
			t.Errorf("ParseRule(%q) = %q, want the rule and %q in it", tt.rule, err, tt.wantInErr)
		}
	}
}

func TestNoProxyListsTheExcludesItCanExpress(t *testing.T) {
	rs, err := New([]string{"*.internal"}, []string{"*.example.com", "api.stripe.com:443", "10.0.0.0/8", "[fd00::1]:80", "db-?.corp"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "localhost,127.0.0.1,::1,.example.com,api.stripe.com:443,10.0.0.0/8,[fd00::1]:80"
	if got := rs.NoProxy(); got != want {
		t.Errorf("NoProxy() = %q, want %q", got, want)
	}
}

func TestDialRoutesEachSide(t *testing.T) {
	rs, err := New(nil, []string{"users"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	errCluster, errLocal := errors.New("cluster"), errors.New("local")
	dial := rs.Dial(
		func(context.Context, string, string) (net.Conn, error) { return nil, errCluster },
		func(context.Context, string, string) (net.Conn, error) { return nil, errLocal },
	)
	if _, err := dial(context.Background(), "tcp", "orders:80"); !errors.Is(err, errCluster) {
		t.Errorf("orders:80 went to %v, want the cluster", err)
	}
	_, err = dial(context.Background(), "tcp", "users:80")
	if !errors.Is(err, errLocal) || !strings.Contains(err.Error(), "users:80") {
		t.Errorf("users:80: %v, want the local dialer's error naming the address", err)
	}
}
