package kubeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443"}
- name: b
  cluster: {server: "https://b.example:6443"}
users:
- name: u
  user: {token: secret}
contexts:
- name: ctx-a
  context: {cluster: a, user: u, namespace: team-a}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
`

func TestKubeconfigExplicitFileContextAndNamespace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "elsewhere"))

	cfg, ns, err := LoadRESTConfig(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://a.example:6443" || ns != "team-a" || cfg.BearerToken != "secret" {
		t.Errorf("current context: host %q, namespace %q, token %q", cfg.Host, ns, cfg.BearerToken)
	}

	cfg, ns, err = LoadRESTConfig(path, "ctx-b")
	if err != nil {
		t.Fatal(err)
	}
	// A context without a namespace gives "default", as kubectl does.
	if cfg.Host != "https://b.example:6443" || ns != "default" {
		t.Errorf("context ctx-b: host %q, namespace %q", cfg.Host, ns)
	}

	// $KUBECONFIG is used when no path is given.
	t.Setenv("KUBECONFIG", path)
	if cfg, _, err := LoadRESTConfig("", "ctx-b"); err != nil || cfg.Host != "https://b.example:6443" {
		t.Errorf("from $KUBECONFIG: %v, %v", cfg, err)
	}
}

func TestKubeconfigErrorSaysWhere(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if _, _, err := LoadRESTConfig(missing, ""); err == nil || !strings.Contains(err.Error(), "load kubeconfig ("+missing+")") {
		t.Errorf("explicit missing file: err = %v", err)
	}
	t.Setenv("KUBECONFIG", missing)
	t.Setenv("HOME", t.TempDir())
	// None at all: the next command to run, not client-go's KUBERNETES_MASTER.
	_, _, err := LoadRESTConfig("", "")
	for _, want := range []string{"no kubeconfig found ($KUBECONFIG or ~/.kube/config)", "kloop claim", "set KUBECONFIG", "kloop sandbox up"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no kubeconfig: err = %v, want it to say %q", err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadRESTConfig(path, "no-such-context"); err == nil {
		t.Error("unknown context: no error")
	}
}

func TestDefaultHolder(t *testing.T) {
	h := DefaultHolder()
	user, host, ok := strings.Cut(h, "@")
	if !ok || user == "" || host == "" {
		t.Errorf("DefaultHolder() = %q, want user@host", h)
	}
}
