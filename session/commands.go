package session

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/workload"
)

// The argument types of the commands (declared in package command). Each
// Validate is the one place its rules live: the daemon checks them before a
// command runs, the CLI before it sends one.

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate checks the pool name and the duration.
func (a ClaimArgs) Validate() error {
	if a.Pool != "" && (len(a.Pool) > 63 || !dnsLabel.MatchString(a.Pool)) {
		return fmt.Errorf("pool %q is not a valid name: use lower-case letters, digits and '-'", a.Pool)
	}
	_, err := a.duration()
	return err
}

// duration is For parsed; 0 when not given.
func (a ClaimArgs) duration() (time.Duration, error) {
	if a.For == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(a.For)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("for %q: want a positive duration such as 8h or 90m", a.For)
	}
	if d > config.MaxClaimFor {
		return 0, fmt.Errorf("for %q: a claim lasts at most %s", a.For, config.MaxClaimFor)
	}
	return d, nil
}

// Validate implements command.Args.
func (ReleaseArgs) Validate() error { return nil }

// ProgressTitle names the intercept in its progress report.
func (a InterceptArgs) ProgressTitle() string { return "Intercepting " + a.Workload }

// Validate checks the workload, the port and the header rule.
func (a InterceptArgs) Validate() error {
	if a.Workload == "" {
		return fmt.Errorf("workload is required, e.g. deployment/orders")
	}
	if _, err := workload.Parse(a.Workload); err != nil {
		return err
	}
	if a.Port != "" {
		if _, _, err := config.ParsePort(a.Port); err != nil {
			return err
		}
	}
	for name := range a.Header {
		if !isHeaderToken(name) {
			return fmt.Errorf("header name %q is not a valid HTTP header name", name)
		}
	}
	if _, err := tunnel.NewFilter(a.Rule()); err != nil {
		return fmt.Errorf("intercept %s: %w", a.Workload, err)
	}
	return nil
}

// Rule is the personal rule the arguments give; empty when they give none
// (the intercept takes .kloop.yaml's rule, else it is global).
func (a InterceptArgs) Rule() tunnel.RuleSpec {
	return tunnel.RuleSpec{Header: a.Header, Path: a.Path, PathRegex: a.PathRegex, Method: a.Method, Match: a.Match}
}

// Validate checks that the workload, when given, parses, and that it and
// All are not both given.
func (a LeaveArgs) Validate() error {
	if a.All && a.Workload != "" {
		return fmt.Errorf("give either workload or all, not both")
	}
	if a.Workload != "" {
		if _, err := workload.Parse(a.Workload); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks that the workload, when given, parses.
func (a RelaunchArgs) Validate() error {
	if a.Workload != "" {
		if _, err := workload.Parse(a.Workload); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the workload and the format.
func (a EnvArgs) Validate() error {
	if a.Workload == "" {
		return fmt.Errorf("workload is required, e.g. deployment/orders")
	}
	if _, err := workload.Parse(a.Workload); err != nil {
		return err
	}
	switch a.Format {
	case "", "dotenv", "json", "shell":
	default:
		return fmt.Errorf("format %q: want dotenv, json or shell", a.Format)
	}
	return nil
}

// isHeaderToken reports whether s is an HTTP header name (RFC 9110 token).
func isHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 127 || !(c == '-' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return false
		}
	}
	return true
}

// ClaimArgs are the arguments of kloop.claim / `kloop claim`.
type ClaimArgs struct {
	// Pool names the pool; empty means the workspace default.
	Pool string `json:"pool,omitempty"`
	// For is how long the claim lasts, e.g. "8h"; empty means 8h.
	For string `json:"for,omitempty"`
}

// ReleaseArgs are the arguments of kloop.release.
type ReleaseArgs struct{}

// InterceptArgs are the arguments of kloop.intercept / `kloop intercept`.
type InterceptArgs struct {
	Workload string `json:"workload"`
	Port     string `json:"port,omitempty"`
	// Ports are more container ports to intercept besides Port, each
	// REMOTE[:LOCAL] by number; they need Port.
	Ports []string `json:"ports,omitempty"`
	// Header, Path, PathRegex, Method and Match are the personal rule: a
	// request is intercepted when it meets all of them (Match "any": at
	// least one). Given here, they replace .kloop.yaml's rule as a whole.
	Header    map[string]string `json:"header,omitempty"`
	Path      string            `json:"path,omitempty"`
	PathRegex string            `json:"pathRegex,omitempty"`
	// Method lists HTTP methods; an item may be comma-separated (GET,POST).
	Method  []string `json:"method,omitempty"`
	Match   string   `json:"match,omitempty"`
	Debug   bool     `json:"debug,omitempty"`
	Program string   `json:"program,omitempty"`
	Args    []string `json:"args,omitempty"`
	// ReplayOnSave sends the last recorded request of a safe method
	// (GET, HEAD, OPTIONS) to each relaunched build as soon as it is
	// ready, and reports how its answer changed.
	ReplayOnSave bool `json:"replayOnSave,omitempty"`
	// Traffic is the traffic mode (ParseTraffic); "" takes .kloop.yaml's,
	// else steal.
	Traffic string `json:"traffic,omitempty"`
	// Outbound adds to .kloop.yaml's outbound rules: which hosts the
	// program reaches through the cluster (include) and which it dials
	// from this machine (exclude wins).
	Outbound OutboundRules `json:"outbound,omitzero"`
}

// OutboundRules are include and exclude lists of outbound rules (host
// globs, IPs or CIDRs, each with an optional :PORT; see kube/outbound).
type OutboundRules struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// LeaveArgs are the arguments of kloop.leave / `kloop leave`.
type LeaveArgs struct {
	Workload string `json:"workload,omitempty"`
	All      bool   `json:"all,omitempty"`
}

// RelaunchArgs are the arguments of kloop.relaunch.
type RelaunchArgs struct {
	Workload string `json:"workload,omitempty"`
}

// EnvArgs are the arguments of kloop.env / `kloop env`.
type EnvArgs struct {
	Workload string `json:"workload"`
	Format   string `json:"format,omitempty"`
}

// EnvResult is the env of a workload's container rendered in one format.
type EnvResult struct {
	Format  string `json:"format"`
	Content string `json:"content"`
}

// DefaultClaimDuration is how long a claim lasts when no --for is given.
const DefaultClaimDuration = 8 * time.Hour

// Claim takes a slot from a pool for this workspace.
func (s *Session) Claim(ctx context.Context, args ClaimArgs, p Progress) (*ClaimStatus, error) {
	engine := s.mgr.opts.Engines.Claims
	if engine == nil {
		return nil, errNoEngine("claim")
	}
	if err := args.Validate(); err != nil {
		return nil, err
	}
	// Zero: the workspace's claim.for (.kloop.yaml), else DefaultClaimDuration.
	d, _ := args.duration()
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.claim != nil {
		c, _ := s.claim.current()
		if c.Slot == "" {
			return nil, fmt.Errorf("this workspace already has a claim in pool %s (being re-adopted after a daemon restart); see `kloop status`, or `kloop release` first", s.claim.plan.Pool)
		}
		return nil, fmt.Errorf("this workspace already holds slot %s of pool %s until %s; run `kloop release` first", c.Slot, c.Pool, c.Until.UTC().Format(time.RFC3339))
	}
	return s.claimLocked(ctx, engine, args.Pool, d, p)
}

// Release gives the claimed slot back, resetting it.
func (s *Session) Release(ctx context.Context, _ ReleaseArgs, p Progress) error {
	engine := s.mgr.opts.Engines.Claims
	if engine == nil {
		return errNoEngine("claim")
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.claim == nil {
		return fmt.Errorf("this workspace holds no claim; `kloop status` shows what it holds")
	}
	return s.releaseLocked(ctx, engine, p)
}

// LogsArgs are the arguments of kloop.logs / `kloop logs`.
type LogsArgs struct {
	// Program names the program as kloop status shows it; empty means the
	// session's current program.
	Program string `json:"program,omitempty"`
	// Tail keeps only the last Tail lines; 0 means all that are kept.
	Tail int `json:"tail,omitempty"`
}

// Validate checks the tail.
func (a LogsArgs) Validate() error {
	if a.Tail < 0 || a.Tail > ProgramOutputLines {
		return fmt.Errorf("tail %d: want 0 (all) to %d, the lines kloop keeps per program", a.Tail, ProgramOutputLines)
	}
	return nil
}

// LogsResult is a program's last output lines, oldest first.
type LogsResult struct {
	Program string       `json:"program"`
	Lines   []OutputLine `json:"lines"`
}

// Logs returns the last lines the session's program printed (kept in
// memory only, never in the daemon's log).
func (s *Session) Logs(_ context.Context, args LogsArgs) (*LogsResult, error) {
	if err := args.Validate(); err != nil {
		return nil, err
	}
	name := args.Program
	if name == "" {
		st := s.Status()
		if st.Process == nil {
			return nil, fmt.Errorf("no program runs for this workspace; name one with --program, or start one with `kloop intercept WORKLOAD --program ./cmd/x`")
		}
		name = st.Process.Program
	}
	lines := s.ProgramOutput(name)
	if lines == nil {
		lines = []OutputLine{}
	}
	if args.Tail > 0 && len(lines) > args.Tail {
		lines = lines[len(lines)-args.Tail:]
	}
	return &LogsResult{Program: name, Lines: lines}, nil
}
