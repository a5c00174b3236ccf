package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ClaimEngine takes and gives back slots of claim pools. Package
// engines.Claims implements it on kube/claim's Leases.
//
// A claim goes through Plan (no cluster call: the request resolved against
// the workspace's settings, recorded in state.json before anything is
// acted on), Claim, Renew every RenewInterval, and Release. A daemon that
// restarts hands the recorded plan and grant record to Adopt.
type ClaimEngine interface {
	// Plan resolves req against the workspace's settings (.kloop.yaml, the
	// kubeconfig): which cluster, pool and duration. It contacts no cluster.
	Plan(ctx context.Context, req ClaimRequest) (*ClaimPlan, error)
	// Claim takes a free slot as planned.
	Claim(ctx context.Context, plan *ClaimPlan, p Progress) (*Grant, error)
	// Renew keeps the claim's lease alive; the daemon calls it periodically.
	// An error matching ErrClaimEnded means the claim's time is up (the
	// daemon then releases it); ErrClaimLost means it is no longer held.
	Renew(ctx context.Context, g *Grant) error
	// Release resets the slot and frees it. An error matching ErrClaimLost
	// means it was not held any more (nothing was changed).
	Release(ctx context.Context, g *Grant, p Progress) error
	// Adopt finds the claim that plan led to, for a restarted daemon. record
	// is the Grant.Record stored in state.json, nil if the daemon stopped
	// while claiming. An error matching ErrClaimLost means nothing is held.
	Adopt(ctx context.Context, plan *ClaimPlan, record json.RawMessage) (*Grant, error)
	// RenewInterval is how often Renew must be called.
	RenewInterval() time.Duration
}

// Sentinels a ClaimEngine's errors match.
var (
	// ErrClaimEnded: the claim reached the end it was asked for.
	ErrClaimEnded = errors.New("claim ended")
	// ErrClaimLost: the slot is no longer held by this user (its lease
	// lapsed and was taken over, or was deleted).
	ErrClaimLost = errors.New("claim lost")
)

// ClaimRequest is what a user asked for; zero fields take the workspace's
// defaults.
type ClaimRequest struct {
	Workspace string
	Pool      string
	For       time.Duration
}

// ClaimPlan is a claim request resolved against the workspace's settings.
// It is recorded in state.json before the claim is made.
type ClaimPlan struct {
	Workspace string        `json:"workspace"`
	Pool      string        `json:"pool"`
	For       time.Duration `json:"for"`
	// Engine is the engine's own part (cluster, credentials source).
	Engine json.RawMessage `json:"engine,omitempty"`
}

// Grant is a claim held by this daemon.
type Grant struct {
	Status ClaimStatus
	// Handle is the engine's own live record of the claim.
	Handle any
	// Record is what state.json keeps for Adopt.
	Record json.RawMessage
}

// Phases of a claim as recorded in state.json.
const (
	phaseClaiming  = "claiming"
	phaseHeld      = "held"
	phaseReleasing = "releasing"
)

type activeClaim struct {
	plan *ClaimPlan
	// record is the grant record from state.json, for adoption.
	record json.RawMessage
	// releasing: the daemon that recorded the claim was releasing it; the
	// release is finished once the claim is adopted.
	releasing bool

	mu     sync.Mutex
	status ClaimStatus
	grant  *Grant // nil until a restarted daemon has re-adopted the claim

	cancel context.CancelFunc
	done   sync.WaitGroup
}

func (c *activeClaim) current() (ClaimStatus, *Grant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.grant
}

func (c *activeClaim) stopRenewal() {
	c.cancel()
	c.done.Wait()
}

func (s *Session) startRenewal(engine ClaimEngine, ac *activeClaim) {
	ctx, cancel := context.WithCancel(context.Background())
	ac.cancel = cancel
	ac.done.Add(1)
	go s.renew(ctx, engine, ac)
}

func (s *Session) record(phase string, plan *ClaimPlan, g *Grant) error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.ClaimPhase, ss.ClaimPlan = phase, plan
		ss.Claim, ss.ClaimRecord = nil, nil
		if g != nil {
			c := g.Status
			ss.Claim, ss.ClaimRecord = &c, g.Record
		}
	})
}

func (s *Session) forget() error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.Claim, ss.ClaimPhase, ss.ClaimPlan, ss.ClaimRecord = nil, "", nil, nil
	})
}

func (s *Session) claimLocked(ctx context.Context, engine ClaimEngine, pool string, d time.Duration, p Progress) (*ClaimStatus, error) {
	plan, err := engine.Plan(ctx, ClaimRequest{Workspace: s.root, Pool: pool, For: d})
	if err != nil {
		return nil, err
	}
	// Leases allow one slot per pool and user: say where the other one is.
	for _, o := range s.mgr.Sessions() {
		if c := o.Status().Claim; o != s && c != nil && c.Pool == plan.Pool {
			return nil, fmt.Errorf("workspace %s already holds slot %s of pool %s, and you can hold one slot per pool: release it there (`kloop release -w %s`) or claim from another pool", o.root, c.Slot, c.Pool, o.root)
		}
	}
	// Recorded before acting: a daemon that dies mid-claim finds the lease
	// it may have created when it restarts.
	if err := s.record(phaseClaiming, plan, nil); err != nil {
		return nil, fmt.Errorf("record the claim before making it: %w", err)
	}
	g, err := engine.Claim(ctx, plan, p)
	if err != nil {
		if ferr := s.forget(); ferr != nil {
			s.mgr.log.Error("record failed claim", "workspace", s.root, "err", ferr)
		}
		return nil, err
	}
	if err := s.record(phaseHeld, plan, g); err != nil {
		// Without a record the claim would outlive a crash unseen: give it back.
		if rerr := engine.Release(context.WithoutCancel(ctx), g, NoProgress{}); rerr != nil {
			s.mgr.log.Error("give back unrecorded claim", "workspace", s.root, "slot", g.Status.Slot, "err", rerr)
		}
		return nil, fmt.Errorf("record claim: %w", err)
	}
	ac := &activeClaim{plan: plan, status: g.Status, grant: g}
	s.startRenewal(engine, ac)
	s.claim = ac
	st := g.Status
	s.update(func(status *Status) { status.Claim = &st })
	s.mgr.log.Info("claimed", "workspace", s.root, "pool", st.Pool, "slot", st.Slot, "until", st.Until)
	return &st, nil
}

func (s *Session) releaseLocked(ctx context.Context, engine ClaimEngine, p Progress) error {
	ac := s.claim
	ac.stopRenewal()
	_, g := ac.current()
	if g == nil {
		// A restarted daemon that could not re-adopt the claim yet (cluster
		// unreachable): try now.
		var err error
		if g, err = s.adopt(ctx, engine, ac); err != nil && !(g != nil && errors.Is(err, ErrClaimEnded)) {
			if errors.Is(err, ErrClaimLost) {
				s.dropLocked()
				return fmt.Errorf("nothing to release: %w", err)
			}
			s.startRenewal(engine, ac)
			return err
		}
	}
	if err := s.record(phaseReleasing, ac.plan, g); err != nil {
		s.startRenewal(engine, ac)
		return fmt.Errorf("record the release before making it: %w", err)
	}
	if err := engine.Release(ctx, g, p); err != nil {
		if errors.Is(err, ErrClaimLost) {
			// Not ours any more: forget it, and say so.
			s.dropLocked()
			return err
		}
		// Keep renewing what we still hold.
		if rerr := s.record(phaseHeld, ac.plan, g); rerr != nil {
			s.mgr.log.Error("record failed release", "workspace", s.root, "err", rerr)
		}
		s.startRenewal(engine, ac)
		return err
	}
	s.dropLocked()
	s.mgr.log.Info("released", "workspace", s.root, "pool", g.Status.Pool, "slot", g.Status.Slot)
	return nil
}

// dropLocked forgets the claim locally: state.json, status, renewal.
func (s *Session) dropLocked() {
	s.claim = nil
	if err := s.forget(); err != nil {
		s.mgr.log.Error("record release", "workspace", s.root, "err", err)
	}
	s.update(func(status *Status) { status.Claim = nil })
}

// adopt re-attaches a claim recorded by an earlier daemon. It runs on the
// renewal goroutine, or with renewal stopped.
func (s *Session) adopt(ctx context.Context, engine ClaimEngine, ac *activeClaim) (*Grant, error) {
	g, err := engine.Adopt(ctx, ac.plan, ac.record)
	if err != nil && !(g != nil && errors.Is(err, ErrClaimEnded)) {
		return nil, err
	}
	// Held but past its end: adopted so that the renewal releases it.
	ac.mu.Lock()
	ac.grant, ac.status = g, g.Status
	ac.mu.Unlock()
	if err := s.record(phaseHeld, ac.plan, g); err != nil {
		s.mgr.log.Error("record adopted claim", "workspace", s.root, "err", err)
	}
	st := g.Status
	s.update(func(status *Status) { status.Claim = &st })
	s.mgr.log.Info("re-adopted claim", "workspace", s.root, "pool", st.Pool, "slot", st.Slot, "until", st.Until)
	return g, err
}

// renew keeps the claim alive, first re-adopting it if an earlier daemon
// made it. A claim found lost is dropped, one that reached its end is
// released.
func (s *Session) renew(ctx context.Context, engine ClaimEngine, ac *activeClaim) {
	defer ac.done.Done()
	interval := engine.RenewInterval()
	_, g := ac.current()
	wait := interval
	if g == nil {
		wait = 0
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if _, g = ac.current(); g == nil {
			_, err = s.adopt(ctx, engine, ac)
			if err == nil && ac.releasing {
				go s.endClaim(engine, ac, true, "finishing the release an earlier daemon began")
				return
			}
		} else {
			err = engine.Renew(ctx, g)
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrClaimEnded):
			go s.endClaim(engine, ac, true, err.Error())
			return
		case errors.Is(err, ErrClaimLost):
			go s.endClaim(engine, ac, false, err.Error())
			return
		default:
			s.mgr.log.Warn("renew claim; retrying", "workspace", s.root, "pool", ac.plan.Pool, "in", interval, "err", err)
		}
		t.Reset(interval)
	}
}

// endClaim releases (release) or just forgets a claim the renewal found
// ended or lost, unless a command has already replaced it.
func (s *Session) endClaim(engine ClaimEngine, ac *activeClaim, release bool, why string) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.claim != ac {
		return
	}
	ac.stopRenewal()
	st, g := ac.current()
	if release && g != nil {
		s.mgr.log.Info("releasing claim", "workspace", s.root, "pool", st.Pool, "slot", st.Slot, "why", why)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := s.record(phaseReleasing, ac.plan, g); err != nil {
			s.mgr.log.Error("record release", "workspace", s.root, "err", err)
		}
		if err := engine.Release(ctx, g, NoProgress{}); err != nil && !errors.Is(err, ErrClaimLost) {
			s.mgr.log.Warn("release of ended claim failed; the slot frees itself when its lease lapses", "workspace", s.root, "slot", st.Slot, "err", err)
		}
	} else {
		s.mgr.log.Warn("claim lost; forgetting it", "workspace", s.root, "pool", st.Pool, "slot", st.Slot, "why", why)
	}
	s.dropLocked()
}

// adoptClaims re-attaches the claims state.json lists, for a daemon that
// starts after another one stopped or died. Each claim shows in its
// session's status at once (so an idle daemon keeps running and renewing);
// the renewal goroutine finds it in the cluster, and drops it if it was lost.
func (m *Manager) adoptClaims() {
	engine := m.opts.Engines.Claims
	if engine == nil || m.opts.Store == nil {
		return
	}
	st, err := m.opts.Store.Load()
	if err != nil {
		m.log.Error("read recorded claims", "err", err)
		return
	}
	for root, ss := range st.Sessions {
		if ss.ClaimPlan == nil {
			continue
		}
		s := m.Open(root)
		s.opMu.Lock()
		ac := &activeClaim{plan: ss.ClaimPlan, record: ss.ClaimRecord, releasing: ss.ClaimPhase == phaseReleasing}
		if ss.Claim != nil {
			ac.status = *ss.Claim
			c := *ss.Claim
			s.update(func(status *Status) { status.Claim = &c })
		}
		m.log.Info("re-adopting recorded claim", "workspace", root, "pool", ss.ClaimPlan.Pool, "phase", ss.ClaimPhase)
		s.claim = ac
		s.startRenewal(engine, ac)
		s.opMu.Unlock()
	}
}
