// Package claim gives developers exclusive dev environments from pools
// declared in the cluster, with the lock kept in Kubernetes itself: no
// server of kloop's own, and it scales with the cluster.
//
// # Pools
//
// A pool is a ConfigMap kloop-pool-NAME in namespace kloop-system, labelled
// kloop.dev/pool=NAME, whose key pool.yaml lists slots:
//
//	slots:
//	  - {name: dev-1, kind: namespace, namespace: dev-1}
//	  - {name: c-1, kind: kubeconfig, secret: kloop-pool-c-1, server: https://...}
//
// A namespace slot is a namespace of this cluster; a kubeconfig slot is
// another cluster, its self-contained kubeconfig stored in a Secret of
// kloop-system (key "kubeconfig"; its context's namespace is where
// workloads go). Both resolve to the same internal target (a rest.Config, a
// namespace, a kubeconfig), which is how further kinds are added.
// PoolAdmin (`kloop pool create|list|delete`) writes all of this, plus the
// RBAC; deploy/ has the manifests a cluster admin applies first.
//
// # Claims
//
// A claim is a coordination.k8s.io/v1 Lease NAME.SLOT in kloop-system,
// labelled with pool and slot, holding the holder (user@host) in
// holderIdentity, renewTime/leaseDurationSeconds, and the claim's end in
// annotation kloop.dev/until. A slot is:
//   - free when it has no Lease: Claim creates one, and Create is atomic, so
//     of concurrent claimers exactly one wins (the others get AlreadyExists
//     and try the next slot);
//   - held while renewTime + leaseDuration (and until) lie ahead;
//   - expired otherwise: Claim takes it over with an Update carrying the
//     resourceVersion it read, so of concurrent takers one wins, and then
//     resets the slot, since its previous holder left it as it was.
//
// Release resets the slot and then deletes the Lease (so "no Lease" always
// means "clean and free"). If a reset fails, the claim stays held on
// Release, and is marked ended on takeover, so the next claimer resets again.
//
// # Time
//
// All lease times are written and judged in the apiserver's clock, which the
// claimer estimates from the Date header of every response (second
// resolution; see serverClock). Clients with skewed clocks therefore agree
// on who holds what; 2 s of margin are added to every expiry. A local clock
// more than 5 minutes off (WithMaxClockSkew) fails Claim with ClockSkewError,
// because tokens and certificates break at that point anyway. A lease whose
// renew time lies in the server's future (written by something that did not
// use server time) stays held until that time passes, and PoolFullError
// says so.
//
// # Use from the daemon
//
//	c, _ := claim.NewClaimer(cfg, kubeconfig.DefaultHolder())
//	cl, err := c.Claim(ctx, pool, 8*time.Hour, progress)   // typed errors below
//	kc, _ := c.Kubeconfig(ctx, cl); claim.WriteKubeconfig(path, kc)
//	every c.RenewInterval(): c.Renew(ctx, cl)  // ErrClaimEnded: Release; ErrClaimLost: drop it
//	c.Release(ctx, cl, progress)
//	after a restart: c.Find(ctx, pool) re-adopts the holder's claim
//
// The lease lasts DefaultLeaseDuration (60 s) after each renewal and the
// daemon renews every 20 s, so a dead daemon's slot frees itself within
// about a minute while two missed renewals are survived. A *Claim must be
// used by one goroutine at a time. Errors match ErrPoolNotFound,
// ErrPoolFull, ErrForbidden, ErrUnreachable, ErrAlreadyHolding,
// ErrHeldByOther, ErrNotHeld, ErrClaimEnded, ErrClaimLost and ErrClockSkew
// with errors.Is, and carry details in the typed errors of errors.go.
//
// # RBAC
//
// Claimers (subjects of RoleBinding kloop-system/kloop-claimers) may read
// ConfigMaps and manage Leases in kloop-system, read the Secrets of
// kubeconfig pools (a per-pool Role with resourceNames), and work in slot
// namespaces (ClusterRole kloop-claimer-slot, bound per slot). RBAC cannot
// express "only the slot you hold": the Lease is coordination among
// cooperating developers, not a security boundary between them.
package claim
