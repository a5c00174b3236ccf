package session

import (
	"context"
	"fmt"
	"time"
)

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
	Workload string            `json:"workload"`
	Port     string            `json:"port,omitempty"`
	Header   map[string]string `json:"header,omitempty"`
	Debug    bool              `json:"debug,omitempty"`
	Program  string            `json:"program,omitempty"`
	Args     []string          `json:"args,omitempty"`
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
	engine := s.mgr.opts.Capabilities.Claims
	if engine == nil {
		return nil, &NotAvailableError{Command: "kloop.claim", Why: "claim pools are not wired into this daemon"}
	}
	// Zero: the workspace's claim.for (.kloop.yaml), else DefaultClaimDuration.
	var d time.Duration
	if args.For != "" {
		var err error
		if d, err = time.ParseDuration(args.For); err != nil || d <= 0 {
			return nil, fmt.Errorf("claim duration %q: want a positive duration like 8h or 90m", args.For)
		}
	}
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
	engine := s.mgr.opts.Capabilities.Claims
	if engine == nil {
		return &NotAvailableError{Command: "kloop.release", Why: "claim pools are not wired into this daemon"}
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.claim == nil {
		return fmt.Errorf("this workspace holds no claim; `kloop status` shows what it holds")
	}
	return s.releaseLocked(ctx, engine, p)
}
