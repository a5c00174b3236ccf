package engines

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/env"
	"github.com/kloop/kloop/kube/kubeconfig"
	"github.com/kloop/kloop/session"
)

// Env resolves envs. The zero value is ready to use.
type Env struct{}

var _ session.EnvEngine = Env{}

// Env implements session.EnvEngine.
func (Env) Env(ctx context.Context, t session.Target, workload, format string) (string, error) {
	f, err := env.ParseFormat(format)
	if err != nil {
		return "", err
	}
	cfg, ns, err := kubeconfig.LoadRESTConfig(t.Kubeconfig, t.Context)
	if err != nil {
		return "", err
	}
	if t.Namespace != "" {
		ns = t.Namespace
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	res, err := env.Resolve(ctx, client, ns, workload, env.Options{})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := res.Write(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Render implements session.EnvEngine.
func (Env) Render(vars []string, format string) (string, error) {
	f, err := env.ParseFormat(format)
	if err != nil {
		return "", err
	}
	res := &env.Result{}
	for _, kv := range vars {
		name, value, _ := strings.Cut(kv, "=")
		res.Vars = append(res.Vars, env.Var{Name: name, Value: value})
	}
	var b strings.Builder
	if err := res.Write(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}
