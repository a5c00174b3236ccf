package session

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ClaimEngine takes and gives back slots of claim pools. kube/claim
// implements it against the cluster's Lease objects.
type ClaimEngine interface {
	// Claim takes a free slot of pool for d.
	Claim(ctx context.Context, pool string, d time.Duration, p Progress) (*Grant, error)
	// Renew keeps the claim's lease alive; the daemon calls it periodically.
	Renew(ctx context.Context, g *Grant) error
	// Release resets the slot and frees it.
	Release(ctx context.Context, g *Grant, p Progress) error
	// RenewInterval is how often Renew must be called.
	RenewInterval() time.Duration
}

// Grant is a claim held by this daemon.
type Grant struct {
	Status ClaimStatus
	// Handle is the engine's own record of the claim.
	Handle any
}

type activeClaim struct {
	status ClaimStatus
	grant  *Grant
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func (c *activeClaim) stopRenewal() {
	c.cancel()
	c.done.Wait()
}

func (s *Session) claimLocked(ctx context.Context, engine ClaimEngine, pool string, d time.Duration, p Progress) (*ClaimStatus, error) {
	g, err := engine.Claim(ctx, pool, d, p)
	if err != nil {
		return nil, err
	}
	if err := s.mgr.opts.Store.update(func(st *State) {
		st.session(s.root).Claim = &g.Status
	}); err != nil {
		// Without a record the claim would outlive a crash unseen: give it back.
		_ = engine.Release(context.WithoutCancel(ctx), g, NoProgress{})
		return nil, fmt.Errorf("record claim: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	ac := &activeClaim{status: g.Status, grant: g, cancel: cancel}
	ac.done.Add(1)
	go s.renew(rctx, engine, ac)
	s.claim = ac
	st := g.Status
	s.update(func(status *Status) { status.Claim = &st })
	return &st, nil
}

func (s *Session) releaseLocked(ctx context.Context, engine ClaimEngine, p Progress) error {
	ac := s.claim
	ac.stopRenewal()
	if err := engine.Release(ctx, ac.grant, p); err != nil {
		// Keep renewing what we still hold.
		rctx, cancel := context.WithCancel(context.Background())
		ac.cancel = cancel
		ac.done.Add(1)
		go s.renew(rctx, engine, ac)
		return err
	}
	s.claim = nil
	if err := s.mgr.opts.Store.update(func(st *State) { st.session(s.root).Claim = nil }); err != nil {
		s.mgr.log.Error("record release", "workspace", s.root, "err", err)
	}
	s.update(func(status *Status) { status.Claim = nil })
	return nil
}

func (s *Session) renew(ctx context.Context, engine ClaimEngine, ac *activeClaim) {
	defer ac.done.Done()
	t := time.NewTicker(engine.RenewInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := engine.Renew(ctx, ac.grant); err != nil && ctx.Err() == nil {
				s.mgr.log.Warn("renew claim", "workspace", s.root, "slot", ac.status.Slot, "err", err)
			}
		}
	}
}
