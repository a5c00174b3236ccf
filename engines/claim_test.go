package engines

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kloop/kloop/session"
)

// writeKubeconfig writes a kubeconfig with one context per server.
func writeKubeconfig(t *testing.T, path string, current string, servers map[string]string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, server := range servers {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "t"}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.CurrentContext = current
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func TestPlanResolvesTheWorkspaceSettings(t *testing.T) {
	e := NewClaims(ClaimsOptions{Dir: t.TempDir(), Holder: "me@here"})
	ctx := context.Background()
	env := filepath.Join(t.TempDir(), "env.kubeconfig")
	writeKubeconfig(t, env, "a", map[string]string{"a": "https://a.example:6443"})
	t.Setenv("KUBECONFIG", env)

	target := func(p *session.ClaimPlan) target {
		var tg target
		if err := json.Unmarshal(p.Engine, &tg); err != nil {
			t.Fatal(err)
		}
		return tg
	}

	// No .kloop.yaml: $KUBECONFIG, no pool (the cluster's default pool,
	// chosen when claiming) and the default duration.
	bare := t.TempDir()
	p, err := e.Plan(ctx, session.ClaimRequest{Workspace: bare})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pool != "" || p.For != 8*time.Hour || target(p).Server != "https://a.example:6443" {
		t.Errorf("bare plan = %+v %+v", p, target(p))
	}

	// .kloop.yaml: its pool, duration, kubeconfig (relative to it) and
	// context; the request's own values win.
	ws := t.TempDir()
	writeKubeconfig(t, filepath.Join(ws, "dev.kubeconfig"), "x", map[string]string{"x": "https://x.example", "y": "https://y.example"})
	if err := os.WriteFile(filepath.Join(ws, ".kloop.yaml"), []byte("kubeconfig: dev.kubeconfig\ncontext: y\nclaim:\n  pool: team\n  for: 90m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err = e.Plan(ctx, session.ClaimRequest{Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	if tg := target(p); p.Pool != "team" || p.For != 90*time.Minute || tg.Server != "https://y.example" || !tg.Explicit || tg.Context != "y" {
		t.Errorf("plan = %+v %+v", p, tg)
	}
	p, err = e.Plan(ctx, session.ClaimRequest{Workspace: ws, Pool: "other", For: time.Hour})
	if err != nil || p.Pool != "other" || p.For != time.Hour {
		t.Errorf("plan with request values = %+v, %v", p, err)
	}

	// Problems are named.
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, ".kloop.yaml"), []byte("claim:\n  fro: 8h\n"), 0o644)
	if _, err := e.Plan(ctx, session.ClaimRequest{Workspace: broken}); err == nil || !strings.Contains(err.Error(), ".kloop.yaml") {
		t.Errorf("plan with a broken .kloop.yaml: %v", err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	if _, err := e.Plan(ctx, session.ClaimRequest{Workspace: bare}); err == nil || !strings.Contains(err.Error(), "no kubeconfig found") {
		t.Errorf("plan without a kubeconfig: %v", err)
	}
}

func TestAdoptRefusesAnotherCluster(t *testing.T) {
	e := NewClaims(ClaimsOptions{Dir: t.TempDir(), Holder: "me@here"})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	writeKubeconfig(t, path, "a", map[string]string{"a": "https://a.example"})
	t.Setenv("KUBECONFIG", path)
	p, err := e.Plan(context.Background(), session.ClaimRequest{Workspace: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The kubeconfig now points elsewhere: the recorded claim is not there.
	writeKubeconfig(t, path, "b", map[string]string{"b": "https://b.example"})
	_, err = e.Adopt(context.Background(), p, nil)
	if err == nil || !strings.Contains(err.Error(), "https://a.example") || !errors.Is(err, session.ErrClaimLost) {
		t.Errorf("adopt on another cluster: %v", err)
	}
}
