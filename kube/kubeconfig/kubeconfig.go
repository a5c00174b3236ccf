// Package kubeconfig loads kubeconfigs the way kubectl does ($KUBECONFIG,
// else ~/.kube/config, or an explicit file; a context, else the current one;
// and that context's namespace) and says who the user is (user@host, the
// holder of claims and intercepts). It is shared by claims, intercepts and
// env.
package kubeconfig

import (
	"fmt"
	"os"
	"os/user"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// LoadRESTConfig loads a kubeconfig the way kubectl does: path, else
// $KUBECONFIG, else ~/.kube/config; contextName "" means the current context.
// It also returns the namespace of the chosen context ("default" if unset,
// as kubectl).
func LoadRESTConfig(path, contextName string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: contextName})
	cfg, err := cc.ClientConfig()
	if err != nil {
		where := path
		if where == "" {
			where = "$KUBECONFIG or ~/.kube/config"
		}
		if clientcmd.IsEmptyConfig(err) {
			// client-go's own words name KUBERNETES_MASTER; say kloop's way.
			return nil, "", fmt.Errorf("no kubeconfig found (%s): run `kloop claim` for a namespace of your own, or set KUBECONFIG (or kubeconfig: in .kloop.yaml); no cluster at all? `kloop sandbox up`: %w", where, err)
		}
		return nil, "", fmt.Errorf("load kubeconfig (%s): %w", where, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("namespace of kubeconfig context: %w", err)
	}
	return cfg, ns, nil
}

// DefaultHolder returns user@host for the current process.
func DefaultHolder() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return name + "@" + host
}
