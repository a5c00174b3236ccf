package engines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/kube/kubeconfig"
	"github.com/kloop/kloop/session"
)

// ClaimsOptions configure a Claims.
type ClaimsOptions struct {
	// Dir is where claim kubeconfigs are written (created 0700).
	Dir string
	// Holder is the identity written into leases; "" means
	// kubeconfig.DefaultHolder() (user@host).
	Holder string
	// LeaseDuration of new claims; 0 means claim.DefaultLeaseDuration.
	LeaseDuration time.Duration
	Logger        *slog.Logger
}

// Claims implements session.ClaimEngine.
type Claims struct {
	opts ClaimsOptions
	log  *slog.Logger

	mu       sync.Mutex
	claimers map[string]*claim.Claimer // by target key
}

var _ session.ClaimEngine = (*Claims)(nil)

// NewClaims returns a Claims; it makes no cluster call.
func NewClaims(opts ClaimsOptions) *Claims {
	if opts.Holder == "" {
		opts.Holder = kubeconfig.DefaultHolder()
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = claim.DefaultLeaseDuration
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Claims{opts: opts, log: opts.Logger, claimers: map[string]*claim.Claimer{}}
}

// target says which cluster, as whom: the engine's part of a ClaimPlan.
type target struct {
	// Kubeconfig lists the kubeconfig files merged, in precedence order
	// (a $KUBECONFIG list, or one file).
	Kubeconfig []string `json:"kubeconfig"`
	// Explicit: Kubeconfig is one file named by .kloop.yaml, which must exist.
	Explicit bool   `json:"explicit,omitempty"`
	Context  string `json:"context,omitempty"`
	// Server is the API server the claim was planned against.
	Server string `json:"server"`
}

func (t target) key() string {
	return fmt.Sprintf("%q|%t|%q", t.Kubeconfig, t.Explicit, t.Context)
}

func (t target) describe() string {
	s := strings.Join(t.Kubeconfig, string(filepath.ListSeparator))
	if t.Context != "" {
		s += ", context " + t.Context
	}
	return s
}

// restConfig loads the kubeconfig the way kubectl does.
func (t target) restConfig() (*rest.Config, error) {
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: t.Kubeconfig}
	if t.Explicit {
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: t.Kubeconfig[0]}
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: t.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, fmt.Errorf("no kubeconfig found in %s: set KUBECONFIG, or kubeconfig: in .kloop.yaml, to reach the cluster that declares the claim pools", t.describe())
		}
		if t.Explicit {
			return nil, fmt.Errorf("load kubeconfig %s (kubeconfig: of .kloop.yaml): %w", t.describe(), err)
		}
		return nil, fmt.Errorf("load kubeconfig %s: %w", t.describe(), err)
	}
	return cfg, nil
}

// handle is a Grant's Handle.
type handle struct {
	claimer *claim.Claimer
	claim   *claim.Claim
	path    string // the slot kubeconfig
}

// record is a Grant's Record, kept in state.json.
type record struct {
	Claim      *claim.Claim `json:"claim"`
	Kubeconfig string       `json:"kubeconfig"`
}

// Plan implements session.ClaimEngine: the pool and duration from the
// request, else .kloop.yaml, else the defaults; the cluster from
// .kloop.yaml's kubeconfig/context, else $KUBECONFIG, else ~/.kube/config.
func (e *Claims) Plan(ctx context.Context, req session.ClaimRequest) (*session.ClaimPlan, error) {
	cfg, cfgPath, err := config.Load(req.Workspace)
	if err != nil {
		return nil, fmt.Errorf("read the workspace settings: %w", err)
	}
	t := target{Context: cfg.Context}
	dir := req.Workspace
	if cfgPath != "" {
		dir = filepath.Dir(cfgPath)
	}
	explicit, err := cfg.KubeconfigPath(dir)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %s: %w", cfgPath, err)
	}
	switch {
	case explicit != "":
		t.Kubeconfig, t.Explicit = []string{explicit}, true
	case os.Getenv("KUBECONFIG") != "":
		for _, p := range filepath.SplitList(os.Getenv("KUBECONFIG")) {
			if p != "" {
				t.Kubeconfig = append(t.Kubeconfig, p)
			}
		}
	default:
		t.Kubeconfig = []string{clientcmd.RecommendedHomeFile}
	}
	rc, err := t.restConfig()
	if err != nil {
		return nil, err
	}
	t.Server = rc.Host
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode claim plan: %w", err)
	}
	plan := &session.ClaimPlan{Workspace: req.Workspace, Pool: req.Pool, For: req.For, Engine: raw}
	if plan.Pool == "" {
		// Still "" without claim.pool: the claim takes the pool the
		// cluster marks default (kube/claim decides, when it claims).
		plan.Pool = cfg.Claim.Pool
	}
	if plan.For <= 0 {
		plan.For = cfg.Claim.For
	}
	if plan.For <= 0 {
		plan.For = config.DefaultClaimFor
	}
	return plan, nil
}

// claimer returns the cached Claimer for t.
func (e *Claims) claimer(t target) (*claim.Claimer, *rest.Config, error) {
	rc, err := t.restConfig()
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := t.key() + "|" + rc.Host
	if c, ok := e.claimers[key]; ok {
		return c, rc, nil
	}
	// The reset of a slot on release makes about 30 requests; at
	// client-go's default 5 QPS they would queue for seconds.
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 100, 200
	}
	c, err := claim.NewClaimer(rc, e.opts.Holder, claim.WithLeaseDuration(e.opts.LeaseDuration), claim.WithLogger(e.log))
	if err != nil {
		return nil, nil, err
	}
	e.claimers[key] = c
	return c, rc, nil
}

func (e *Claims) planned(plan *session.ClaimPlan) (*claim.Claimer, target, error) {
	var t target
	if err := json.Unmarshal(plan.Engine, &t); err != nil || len(t.Kubeconfig) == 0 {
		return nil, t, fmt.Errorf("claim plan of %s names no cluster (state written by another kloop?)", plan.Workspace)
	}
	c, rc, err := e.claimer(t)
	if err != nil {
		return nil, t, err
	}
	if t.Server != "" && rc.Host != t.Server {
		return nil, t, &sentinelError{fmt.Errorf("the claim was made on %s, but %s now points at %s", t.Server, t.describe(), rc.Host), session.ErrClaimLost}
	}
	return c, t, nil
}

// Claim implements session.ClaimEngine.
func (e *Claims) Claim(ctx context.Context, plan *session.ClaimPlan, p session.Progress) (*session.Grant, error) {
	c, t, err := e.planned(plan)
	if err != nil {
		return nil, err
	}
	cl, err := c.Claim(ctx, plan.Pool, plan.For, progress(p))
	pool := "pool " + plan.Pool
	if plan.Pool == "" {
		pool = "the default pool"
	}
	if errors.Is(err, claim.ErrAlreadyHolding) && plan.Pool == "" {
		// The session could not compare pools before the cluster chose one.
		return nil, fmt.Errorf("claim a slot of %s on %s: %w (in the workspace that holds it; or claim from another pool with --pool)", pool, t.Server, err)
	}
	if errors.Is(err, claim.ErrAlreadyHolding) {
		// The session found no workspace of this daemon holding it.
		return nil, fmt.Errorf("claim a slot of %s on %s: %w (no workspace of this kloop daemon holds it: another kloop daemon of %s does, or one that stopped without its state; such a claim frees itself %s after its last renewal)", pool, t.Server, err, e.opts.Holder, e.opts.LeaseDuration)
	}
	if err != nil {
		return nil, fmt.Errorf("claim a slot of %s on %s: %w", pool, t.Server, err)
	}
	g, err := e.grant(ctx, c, cl, plan.Workspace, p)
	if err != nil {
		// Holding a slot whose kubeconfig could not be written helps nobody.
		if rerr := c.Release(context.WithoutCancel(ctx), cl, nil); rerr != nil {
			e.log.Warn("give back claim", "slot", cl.Slot, "err", rerr)
		}
		return nil, err
	}
	return g, nil
}

// grant writes the slot's kubeconfig and describes the claim.
func (e *Claims) grant(ctx context.Context, c *claim.Claimer, cl *claim.Claim, workspace string, p session.Progress) (*session.Grant, error) {
	data, err := c.Kubeconfig(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of slot %s: %w", cl.Slot, err)
	}
	path := e.kubeconfigPath(cl, workspace)
	if err := claim.WriteKubeconfig(path, data); err != nil {
		return nil, err
	}
	if p != nil {
		p.Report("wrote kubeconfig "+path, -1)
	}
	raw, err := json.Marshal(record{Claim: cl, Kubeconfig: path})
	if err != nil {
		return nil, fmt.Errorf("encode claim record: %w", err)
	}
	return &session.Grant{
		Status: session.ClaimStatus{
			Pool: cl.Pool, Slot: cl.Slot, Namespace: cl.Namespace, Holder: cl.Holder,
			Until: cl.Until.UTC(), Kubeconfig: path, ResidentAgents: cl.ResidentAgents,
		},
		Handle: &handle{claimer: c, claim: cl, path: path},
		Record: raw,
	}, nil
}

// kubeconfigPath is DIR/POOL.SLOT.HASH.kubeconfig, HASH naming the
// workspace so that two workspaces never share a file.
func (e *Claims) kubeconfigPath(cl *claim.Claim, workspace string) string {
	sum := sha256.Sum256([]byte(workspace))
	return filepath.Join(e.opts.Dir, fmt.Sprintf("%s.%s.%s.kubeconfig", cl.Pool, cl.Slot, hex.EncodeToString(sum[:4])))
}

// Renew implements session.ClaimEngine.
func (e *Claims) Renew(ctx context.Context, g *session.Grant) error {
	h := g.Handle.(*handle)
	return classify(h.claimer.Renew(ctx, h.claim))
}

// Release implements session.ClaimEngine: the slot is reset, the lease
// deleted and the kubeconfig removed.
func (e *Claims) Release(ctx context.Context, g *session.Grant, p session.Progress) error {
	h := g.Handle.(*handle)
	err := h.claimer.Release(ctx, h.claim, progress(p))
	if errors.Is(err, claim.ErrNotHeld) || errors.Is(err, claim.ErrHeldByOther) {
		err = &sentinelError{err, session.ErrClaimLost}
	}
	if err != nil && !errors.Is(err, session.ErrClaimLost) {
		return err
	}
	if rerr := os.Remove(h.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		e.log.Warn("remove claim kubeconfig", "path", h.path, "err", rerr)
	}
	return err
}

// Adopt implements session.ClaimEngine: the holder's lease in the planned
// pool, renewed at once (which revives a lapsed lease nobody took over),
// and its kubeconfig written again.
func (e *Claims) Adopt(ctx context.Context, plan *session.ClaimPlan, raw json.RawMessage) (*session.Grant, error) {
	c, _, err := e.planned(plan)
	if err != nil {
		return nil, err
	}
	var rec record
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("decode recorded claim: %w", err)
		}
	}
	cl, err := c.Find(ctx, plan.Pool)
	if errors.Is(err, claim.ErrNotHeld) || errors.Is(err, claim.ErrPoolNotFound) {
		if rec.Kubeconfig != "" {
			os.Remove(rec.Kubeconfig)
		}
		return nil, &sentinelError{err, session.ErrClaimLost}
	}
	if err != nil {
		return nil, classify(err)
	}
	if err := c.Renew(ctx, cl); err != nil {
		err = classify(err)
		if errors.Is(err, session.ErrClaimEnded) {
			// Still ours: hand it over so that the session releases it.
			g, gerr := e.grant(ctx, c, cl, plan.Workspace, nil)
			if gerr != nil {
				return nil, gerr
			}
			return g, err
		}
		return nil, err
	}
	g, err := e.grant(ctx, c, cl, plan.Workspace, nil)
	if err != nil {
		return nil, err
	}
	if rec.Kubeconfig != "" && rec.Kubeconfig != g.Status.Kubeconfig {
		os.Remove(rec.Kubeconfig)
	}
	return g, nil
}

// RenewInterval implements session.ClaimEngine.
func (e *Claims) RenewInterval() time.Duration {
	// What claim.Claimer.RenewInterval computes, without needing a claimer.
	d := e.opts.LeaseDuration
	if rem := d % time.Second; rem != 0 {
		d += time.Second - rem
	}
	return max(d/3, 100*time.Millisecond)
}

// classify maps kube/claim's ended/lost errors onto session's sentinels.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, claim.ErrClaimEnded):
		return &sentinelError{err, session.ErrClaimEnded}
	case errors.Is(err, claim.ErrClaimLost), errors.Is(err, claim.ErrNotHeld):
		return &sentinelError{err, session.ErrClaimLost}
	}
	return err
}

// sentinelError gives err (whose message already says what happened) the
// identity of one of session's sentinels.
type sentinelError struct {
	err error
	is  error
}

func (e *sentinelError) Error() string        { return e.err.Error() }
func (e *sentinelError) Unwrap() error        { return e.err }
func (e *sentinelError) Is(target error) bool { return target == e.is }

func progress(p session.Progress) func(string) {
	if p == nil {
		return nil
	}
	return func(msg string) { p.Report(msg, -1) }
}
