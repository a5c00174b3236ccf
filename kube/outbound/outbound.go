// Package outbound decides which of the local program's outbound connections
// leave from inside the cluster (through the intercept's agent) and which are
// dialed directly from the developer's machine.
//
// A rule is a host glob (users, *.svc.cluster.local, *.internal), an IP, or
// a CIDR (10.0.0.0/8), each with an optional :PORT (users:8080,
// 10.0.0.0/8:443, [fd00::/8]:443). An address goes to the cluster when an
// include rule or a default matches it and no exclude rule does: exclude
// always wins, so a rule can carve one host out of a wide include. The
// defaults are the names only the cluster's DNS resolves (single-label
// names, NAME.NAMESPACE for the namespaces the Rules know, *.svc and
// *.svc.cluster.local) and the cluster's Service CIDRs when known.
package outbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Rule is one parsed include or exclude entry.
type Rule struct {
	raw    string
	host   string // lower-case glob; "" for an IP or CIDR rule
	prefix netip.Prefix
	port   int // 0: any port
}

// String returns the rule as written.
func (r Rule) String() string { return r.raw }

// ParseRule reads HOSTGLOB[:PORT], IP[:PORT], CIDR[:PORT], [IPv6][:PORT] or
// [IPv6CIDR][:PORT].
func ParseRule(s string) (Rule, error) {
	r := Rule{raw: s}
	body := strings.TrimSpace(s)
	if body == "" {
		return r, fmt.Errorf("outbound rule is empty: write a host such as users or *.internal, or a CIDR such as 10.0.0.0/8, each with an optional :PORT")
	}
	var port string
	switch {
	case strings.HasPrefix(body, "["):
		end := strings.Index(body, "]")
		if end < 0 {
			return r, fmt.Errorf("outbound rule %q: '[' without ']'; write an IPv6 address or CIDR as [fd00::/8] or [fd00::/8]:443", s)
		}
		rest := body[end+1:]
		if rest != "" {
			var ok bool
			if port, ok = strings.CutPrefix(rest, ":"); !ok {
				return r, fmt.Errorf("outbound rule %q: after ']' only :PORT may follow", s)
			}
		}
		body = body[1:end]
	case strings.Contains(body, "/"):
		// CIDR: a port can only follow the prefix length.
		addr, bits, _ := strings.Cut(body, "/")
		if b, p, ok := strings.Cut(bits, ":"); ok {
			bits, port = b, p
		}
		body = addr + "/" + bits
	case strings.Count(body, ":") == 1:
		body, port, _ = strings.Cut(body, ":")
	case strings.Count(body, ":") > 1:
		if _, err := netip.ParseAddr(body); err != nil {
			return r, fmt.Errorf("outbound rule %q is neither HOST[:PORT] nor an IPv6 address; put an IPv6 address with a port in brackets, as [fd00::1]:443", s)
		}
	}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return r, fmt.Errorf("outbound rule %q: port %q must be a number from 1 to 65535", s, port)
		}
		r.port = n
	}
	if strings.Contains(body, "/") {
		p, err := netip.ParsePrefix(body)
		if err != nil {
			return r, fmt.Errorf("outbound rule %q: %q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s, body)
		}
		r.prefix = p.Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(body); err == nil {
		r.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return r, nil
	}
	host := strings.TrimSuffix(strings.ToLower(body), ".")
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._*?[]", c)) {
			return r, fmt.Errorf("outbound rule %q: %q is not a host name or glob (letters, digits, '-', '.', and the wildcards * ? [ ])", s, body)
		}
	}
	if _, err := path.Match(host, ""); err != nil || host == "" {
		return r, fmt.Errorf("outbound rule %q: %q is not a valid glob (check its [ ] brackets)", s, body)
	}
	r.host = host
	return r, nil
}

func (r Rule) matches(host string, ip netip.Addr, port int) bool {
	if r.port != 0 && r.port != port {
		return false
	}
	if r.host == "" {
		return ip.IsValid() && r.prefix.Contains(ip)
	}
	ok, _ := path.Match(r.host, host)
	return ok
}

// noProxy is the rule in the NO_PROXY syntax Go's net/http and curl share,
// or "" when it has none (a glob other than a leading "*.").
func (r Rule) noProxy() string {
	var s string
	switch {
	case r.host == "":
		if r.prefix.IsSingleIP() {
			s = r.prefix.Addr().String()
		} else {
			s = r.prefix.String()
		}
	case strings.HasPrefix(r.host, "*.") && !strings.ContainsAny(r.host[2:], "*?["):
		s = r.host[1:]
	case !strings.ContainsAny(r.host, "*?["):
		s = r.host
	default:
		return ""
	}
	if r.port != 0 {
		if strings.Contains(s, ":") {
			s = "[" + s + "]"
		}
		s += ":" + strconv.Itoa(r.port)
	}
	return s
}

// Options are what the Rules know about the cluster.
type Options struct {
	// Namespaces make NAME.NAMESPACE names go to the cluster. Only the
	// namespaces listed are known: an unknown two-label name could as well
	// be a public domain such as example.com.
	Namespaces []string
	// ServiceCIDRs are the cluster's Service IP ranges.
	ServiceCIDRs []netip.Prefix
}

// Rules is the routing decision for one intercept.
type Rules struct {
	include, exclude []Rule
	namespaces       map[string]bool
	serviceCIDRs     []netip.Prefix
}

// New parses include and exclude; the error names the first bad entry.
func New(include, exclude []string, opts Options) (*Rules, error) {
	rs := &Rules{namespaces: map[string]bool{}, serviceCIDRs: opts.ServiceCIDRs}
	for _, ns := range opts.Namespaces {
		rs.namespaces[strings.ToLower(ns)] = true
	}
	for _, s := range include {
		r, err := ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("include: %w", err)
		}
		rs.include = append(rs.include, r)
	}
	for _, s := range exclude {
		r, err := ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("exclude: %w", err)
		}
		rs.exclude = append(rs.exclude, r)
	}
	return rs, nil
}

// Cluster reports whether addr (HOST:PORT) is to be dialed from inside the
// cluster.
func (rs *Rules) Cluster(addr string) bool {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	port, _ := strconv.Atoi(p)
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	ip, _ := netip.ParseAddr(host)
	ip = ip.Unmap()
	for _, r := range rs.exclude {
		if r.matches(host, ip, port) {
			return false
		}
	}
	for _, r := range rs.include {
		if r.matches(host, ip, port) {
			return true
		}
	}
	return rs.clusterByDefault(host, ip)
}

func (rs *Rules) clusterByDefault(host string, ip netip.Addr) bool {
	if ip.IsValid() {
		for _, p := range rs.serviceCIDRs {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	labels := strings.Split(host, ".")
	switch {
	case len(labels) == 1:
		return true
	case len(labels) == 2 && rs.namespaces[labels[1]]:
		return true
	}
	return strings.HasSuffix(host, ".svc") || strings.HasSuffix(host, ".svc.cluster.local")
}

// NoProxy is the NO_PROXY value for the program: loopback plus each
// exclude rule NO_PROXY can express, so that clients honouring it dial
// those hosts themselves instead of through the proxy. Hosts that stay
// local only by default are not listed; the proxy dials them locally.
func (rs *Rules) NoProxy() string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	for _, r := range rs.exclude {
		if s := r.noProxy(); s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, ",")
}

// DialFunc connects to addr.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial returns a DialFunc that sends each address to cluster or local as
// the rules decide.
func (rs *Rules) Dial(cluster, local DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if rs.Cluster(addr) {
			return cluster(ctx, network, addr)
		}
		c, err := local(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s from this machine (outbound rules keep it local): %w", addr, err)
		}
		return c, nil
	}
}
