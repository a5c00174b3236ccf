package claim

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigFromREST writes cfg as a kubeconfig with one context, named
// contextName, whose namespace is namespace. Credentials are carried over as
// cfg holds them (inline data, file paths, exec plugins).
func KubeconfigFromREST(cfg *rest.Config, contextName, namespace string) ([]byte, error) {
	cluster := &clientcmdapi.Cluster{
		Server:                   cfg.Host + cfg.APIPath,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
	}
	if len(cfg.CAData) > 0 {
		cluster.CertificateAuthority = ""
	}
	user := &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
		ImpersonateUserExtra:  cfg.Impersonate.Extra,
		Username:              cfg.Username,
		Password:              cfg.Password,
		AuthProvider:          cfg.AuthProvider,
		Exec:                  cfg.ExecProvider,
	}
	if len(cfg.CertData) > 0 {
		user.ClientCertificate = ""
	}
	if len(cfg.KeyData) > 0 {
		user.ClientKey = ""
	}
	if cfg.BearerTokenFile != "" {
		// The file is the source of truth (it may be rotated); client-go
		// also fills BearerToken from it.
		user.Token = ""
	}
	out := clientcmdapi.NewConfig()
	out.Clusters[contextName] = cluster
	out.AuthInfos[contextName] = user
	out.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName, Namespace: namespace}
	out.CurrentContext = contextName
	data, err := clientcmd.Write(*out)
	if err != nil {
		return nil, fmt.Errorf("encode kubeconfig: %w", err)
	}
	return data, nil
}

// WriteKubeconfig writes data to path with mode 0600 (its directory 0700 if
// created), replacing the file atomically so that readers never see half of it.
func WriteKubeconfig(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory for kubeconfig: %w", err)
	}
	f, err := os.CreateTemp(dir, ".kubeconfig-*")
	if err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// flattenKubeconfig reads a kubeconfig file for a kubeconfig slot: only its
// current context, with every referenced file inlined, because the Secret
// is read on other machines.
func flattenKubeconfig(path string) ([]byte, string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read kubeconfig %s: %w", path, err)
	}
	if cfg.CurrentContext == "" {
		return nil, "", fmt.Errorf("kubeconfig %s has no current-context; set one with `kubectl config use-context`", path)
	}
	if err := clientcmdapi.MinifyConfig(cfg); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: inline referenced files: %w", path, err)
	}
	server := ""
	if c := cfg.Contexts[cfg.CurrentContext]; c != nil && cfg.Clusters[c.Cluster] != nil {
		server = cfg.Clusters[c.Cluster].Server
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, "", fmt.Errorf("encode kubeconfig %s: %w", path, err)
	}
	return data, server, nil
}
