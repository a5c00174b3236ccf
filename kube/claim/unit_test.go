package claim

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestLeaseLiveness(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lease := func(holder string, renewedAgo time.Duration, secs int32, until time.Time) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
		if holder != "" {
			l.Spec.HolderIdentity = &holder
		}
		rt := metav1.NewMicroTime(now.Add(-renewedAgo))
		l.Spec.RenewTime = &rt
		l.Spec.LeaseDurationSeconds = &secs
		if !until.IsZero() {
			l.Annotations[AnnotationUntil] = until.Format(time.RFC3339Nano)
		}
		return l
	}
	later := now.Add(time.Hour)
	tests := []struct {
		name string
		l    *coordinationv1.Lease
		live bool
	}{
		{"fresh", lease("a@h", time.Second, 60, later), true},
		{"renewed just within duration", lease("a@h", 59*time.Second, 60, later), true},
		{"within clock margin after expiry", lease("a@h", 61*time.Second, 60, later), true},
		{"expired beyond margin", lease("a@h", 60*time.Second+clockMargin+time.Millisecond, 60, later), false},
		{"claim ended", lease("a@h", time.Second, 60, now.Add(-clockMargin-time.Second)), false},
		{"no holder", lease("", time.Second, 60, later), false},
		{"unreadable until", func() *coordinationv1.Lease {
			l := lease("a@h", time.Second, 60, later)
			l.Annotations[AnnotationUntil] = "tomorrow"
			return l
		}(), false},
		{"no until means lease duration only", lease("a@h", time.Second, 60, time.Time{}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readLease(tt.l).live(now); got != tt.live {
				t.Errorf("live = %v, want %v", got, tt.live)
			}
		})
	}
}

func TestFutureRenewIsExplained(t *testing.T) {
	now := time.Now()
	in := leaseInfo{holder: "b@h", renewed: now.Add(10 * time.Minute), duration: time.Minute, timesSeen: true, until: now.Add(time.Hour)}
	if !in.live(now) {
		t.Fatal("a lease renewed in the future must count as held")
	}
	if note := in.futureNote(now); !strings.Contains(note, "ahead of the apiserver's clock") {
		t.Errorf("note = %q, want it to explain the skew", note)
	}
	in.renewed = now
	if note := in.futureNote(now); note != "" {
		t.Errorf("note for a normal lease = %q, want none", note)
	}
}

func TestServerClockFromDateHeader(t *testing.T) {
	tests := []struct {
		name  string
		skew  time.Duration // server minus local
		delay time.Duration
	}{
		{"server ahead", 7 * time.Minute, 10 * time.Millisecond},
		{"server behind", -3 * time.Hour, 0},
		{"in sync, slow link", 0, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
			c := newServerClock(func() time.Time { return local })
			start := local
			end := local.Add(tt.delay)
			serverAtMid := start.Add(tt.delay / 2).Add(tt.skew)
			c.observe(start, end, serverAtMid.UTC().Format(http.TimeFormat))
			off, known := c.Offset()
			if !known {
				t.Fatal("offset unknown after a Date header")
			}
			// The header truncates to the second; the estimate must be
			// within the margin expiry decisions add.
			if diff := off - tt.skew; diff > clockMargin || diff < -clockMargin {
				t.Errorf("offset %s, true skew %s: error %s exceeds margin %s", off, tt.skew, diff, clockMargin)
			}
			if got := c.Now().Sub(local.Add(tt.skew)); got > clockMargin || got < -clockMargin {
				t.Errorf("Now is %s off the server's time", got)
			}
		})
	}
	c := newServerClock(nil)
	c.observe(time.Now(), time.Now(), "not a date")
	if _, known := c.Offset(); known {
		t.Error("a bad Date header must not set the offset")
	}
}

func TestParsePool(t *testing.T) {
	cm := func(data string) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "kloop-pool-p", Labels: map[string]string{LabelPool: "p"}},
			Data:       map[string]string{PoolDataKey: data},
		}
	}
	tests := []struct {
		name    string
		data    string
		slots   int
		wantErr string
	}{
		{"namespaces", "slots:\n- {name: p-1, kind: namespace, namespace: p-1}\n- {name: p-2, kind: namespace, namespace: x}\n", 2, ""},
		{"kubeconfig", "slots:\n- {name: c, kind: kubeconfig, secret: s}\n", 1, ""},
		{"unknown kind", "slots:\n- {name: c, kind: vcluster}\n", 0, `kind "vcluster" is unknown`},
		{"missing namespace", "slots:\n- {name: c, kind: namespace}\n", 0, "needs a namespace"},
		{"missing secret", "slots:\n- {name: c, kind: kubeconfig}\n", 0, "needs a secret"},
		{"duplicate", "slots:\n- {name: c, kind: namespace, namespace: a}\n- {name: c, kind: namespace, namespace: b}\n", 0, "appears twice"},
		{"bad slot name", "slots:\n- {name: C.x, kind: namespace, namespace: a}\n", 0, `name "C.x"`},
		{"typo in field", "slots:\n- {name: c, kind: namespace, namspace: a}\n", 0, "namspace"},
		{"empty", "slots: []\n", 0, "declares no slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePool(cm(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Slots) != tt.slots || p.Name != "p" {
				t.Errorf("pool %+v: want name p with %d slots", p, tt.slots)
			}
			// What create writes, parse reads back.
			data, err := encodePool(p)
			if err != nil {
				t.Fatal(err)
			}
			again, err := parsePool(cm(data))
			if err != nil || fmt.Sprint(again.Slots) != fmt.Sprint(p.Slots) {
				t.Errorf("round trip: %v, %v; want %v", again, err, p.Slots)
			}
		})
	}
}

func TestValidatePoolName(t *testing.T) {
	for _, name := range []string{"dev", "team-a", "x1"} {
		if err := ValidatePoolName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "Dev", "a.b", "-x", strings.Repeat("a", maxPoolName+1)} {
		if err := ValidatePoolName(name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

func TestAPIErrorMapping(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "p.s",
		errors.New(`User "bob" cannot create resource "leases"`))
	err := apiError(fmt.Errorf("wrapped: %w", forbidden), "https://h", "create", "leases.coordination.k8s.io", "kloop-system", "p.s")
	var fe *ForbiddenError
	if !errors.As(err, &fe) || !errors.Is(err, ErrForbidden) {
		t.Fatalf("forbidden not mapped: %v", err)
	}
	for _, want := range []string{"cannot create", "leases.coordination.k8s.io", "kloop-system", `User "bob"`, "deploy/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// A real connection failure, not a fabricated one.
	cs := restClientTo(t, "https://127.0.0.1:1")
	_, rerr := cs.Get().AbsPath("/version").DoRaw(t.Context())
	err = apiError(rerr, "https://127.0.0.1:1", "get", "configmaps", "kloop-system", "")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "cannot reach the cluster at https://127.0.0.1:1") {
		t.Errorf("unreachable not mapped: %v", err)
	}

	nf := apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, "x")
	err = apiError(nf, "h", "get", "configmaps", "ns", "x")
	if !apierrors.IsNotFound(err) || errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "get configmaps x in ns") {
		t.Errorf("other errors must stay wrapped as they are: %v", err)
	}
}

func restClientTo(t *testing.T, host string) *rest.RESTClient {
	t.Helper()
	cfg := &rest.Config{Host: host, Timeout: 5 * time.Second}
	cfg.GroupVersion = &schema.GroupVersion{Version: "v1"}
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestErrorMessagesNameWhatToDo(t *testing.T) {
	until := time.Date(2026, 1, 1, 18, 0, 0, 0, time.UTC)
	tests := []struct {
		err      error
		sentinel error
		want     []string
	}{
		{&PoolFullError{Pool: "dev", Now: until.Add(-time.Hour), Holders: []SlotHolder{
			{Slot: "dev-2", Holder: "bob@b", Until: until.Add(time.Hour)},
			{Slot: "dev-1", Holder: "alice@a", Until: until},
		}}, ErrPoolFull, []string{`pool "dev" is full`, "dev-1 held by alice@a until 2026-01-01T18:00:00Z (in 1h0m0s)", "dev-2 held by bob@b"}},
		{&PoolNotFoundError{Pool: "x", Namespace: "kloop-system", Available: []string{"a", "b"}}, ErrPoolNotFound, []string{`pool "x" not found`, "a, b"}},
		{&PoolNotFoundError{Pool: "x", Namespace: "kloop-system"}, ErrPoolNotFound, []string{"kloop pool create"}},
		{&PoolNotFoundError{Namespace: "kloop-system", Available: []string{"a", "b"}}, ErrPoolNotFound,
			[]string{"no --pool given and no pool is marked default", "a, b", "--pool", "claim.pool in .kloop.yaml", "annotate configmap kloop-pool-NAME kloop.dev/default=true"}},
		{&PoolNotFoundError{Namespace: "kloop-system", Available: []string{"a", "b"}, Defaults: []string{"a", "b"}}, ErrPoolNotFound,
			[]string{"pools a, b are all marked default", "--pool", "annotate configmap kloop-pool-b kloop.dev/default-"}},
		{&PoolNotFoundError{Namespace: "kloop-system"}, ErrPoolNotFound, []string{"no pools exist", "kloop pool create NAME --namespaces N --default"}},
		{&HeldByOtherError{Pool: "dev", Slot: "dev-1", Holder: "bob@b", You: "alice@a", Until: until}, ErrHeldByOther, []string{"held by bob@b", "not by alice@a", "nothing was changed"}},
		{&ClockSkewError{Offset: 10 * time.Minute, Max: 5 * time.Minute}, ErrClockSkew, []string{"10m0s behind", "sync the clock"}},
		{&AlreadyHoldingError{Claim: &Claim{Pool: "dev", Slot: "dev-3", Holder: "a@h", Until: until}}, ErrAlreadyHolding, []string{"already holds slot dev-3", "kloop release"}},
	}
	for _, tt := range tests {
		msg := tt.err.Error()
		if !errors.Is(fmt.Errorf("ctx: %w", tt.err), tt.sentinel) {
			t.Errorf("%T does not match %v", tt.err, tt.sentinel)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%T message %q lacks %q", tt.err, msg, w)
			}
		}
	}
	// Holders sorted by when they free: the first one named frees first.
	msg := tests[0].err.Error()
	if strings.Index(msg, "alice") > strings.Index(msg, "bob") {
		t.Errorf("holders not ordered by end time: %s", msg)
	}
}

func TestKubeconfigFromREST(t *testing.T) {
	cfg := &rest.Config{
		Host:            "https://10.0.0.1:6443",
		BearerToken:     "tok",
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CAFile: "/ignored/when/data"},
	}
	data, err := KubeconfigFromREST(cfg, "kloop-dev-dev-1", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if kc.CurrentContext != "kloop-dev-dev-1" || ctx == nil || ctx.Namespace != "dev-1" {
		t.Fatalf("context %q %+v: want kloop-dev-dev-1 in namespace dev-1", kc.CurrentContext, ctx)
	}
	back, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if back.Host != cfg.Host || back.BearerToken != "tok" || string(back.CAData) != "ca" || back.CAFile != "" {
		t.Errorf("round trip lost the connection: host %s token %q ca %q cafile %q", back.Host, back.BearerToken, back.CAData, back.CAFile)
	}
}

func TestWriteKubeconfigIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "kubeconfig")
	for _, content := range []string{"first", "second"} {
		if err := WriteKubeconfig(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
		got, _ := os.ReadFile(path)
		if string(got) != content {
			t.Errorf("content %q, want %q", got, content)
		}
	}
	dir, _ := os.Stat(filepath.Dir(path))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", dir.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".kubeconfig-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLeaseDurationRoundsUpToSeconds(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, DefaultLeaseDuration},
		{1500 * time.Millisecond, 2 * time.Second},
		{100 * time.Millisecond, time.Second},
		{3 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		var opts []Option
		if tt.in != 0 {
			opts = append(opts, WithLeaseDuration(tt.in))
		}
		if got := buildOptions(opts).leaseDuration; got != tt.want {
			t.Errorf("lease duration %s -> %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestFlattenKubeconfigInlinesFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("CA-BYTES"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := `apiVersion: v1
kind: Config
current-context: b
clusters:
- name: a
  cluster: {server: "https://a:6443"}
- name: b
  cluster: {server: "https://b:6443", certificate-authority: ca.crt}
users:
- name: u
  user: {token: t}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u, namespace: work}
`
	path := filepath.Join(dir, "kc.yaml")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	data, server, err := flattenKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if server != "https://b:6443" {
		t.Errorf("server %q", server)
	}
	tgt, err := newKubeconfigTarget(data, "test")
	if err != nil {
		t.Fatal(err)
	}
	if tgt.namespace() != "work" || len(tgt.cfg.Clusters) != 1 || string(tgt.cfg.Clusters["b"].CertificateAuthorityData) != "CA-BYTES" {
		t.Errorf("flattened kubeconfig wrong: ns %q clusters %v", tgt.namespace(), tgt.cfg.Clusters)
	}

	noCtx := filepath.Join(dir, "none.yaml")
	os.WriteFile(noCtx, []byte("apiVersion: v1\nkind: Config\n"), 0o600)
	if _, _, err := flattenKubeconfig(noCtx); err == nil || !strings.Contains(err.Error(), "no current-context") {
		t.Errorf("kubeconfig without a context: %v", err)
	}
}

// A pool's settings beside its slots are annotations of its ConfigMap, so
// that kloops that predate one still parse the pool.
func TestParsePoolAnnotations(t *testing.T) {
	tests := []struct {
		annotations             map[string]string
		wantDefault, wantAgents bool
	}{
		{nil, false, false},
		{map[string]string{AnnotationDefault: "true"}, true, false},
		{map[string]string{AnnotationResidentAgents: "true"}, false, true},
		{map[string]string{AnnotationDefault: "true", AnnotationResidentAgents: "true"}, true, true},
		{map[string]string{AnnotationResidentAgents: "yes"}, false, false},
	}
	for _, tt := range tests {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "kloop-pool-p", Labels: map[string]string{LabelPool: "p"}, Annotations: tt.annotations},
			Data:       map[string]string{PoolDataKey: "slots:\n- {name: p-1, kind: namespace, namespace: p-1}\n"},
		}
		p, err := parsePool(cm)
		if err != nil {
			t.Fatal(err)
		}
		if p.Default != tt.wantDefault || p.ResidentAgents != tt.wantAgents {
			t.Errorf("annotations %v: default=%v residentAgents=%v, want %v and %v", tt.annotations, p.Default, p.ResidentAgents, tt.wantDefault, tt.wantAgents)
		}
	}
}
