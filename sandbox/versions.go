package sandbox

import (
	"fmt"
	"strings"
)

// Versions of the control plane the sandbox builds. Changing any of them
// changes CacheKey, so an old cache is never mistaken for a new one.
const (
	KubernetesVersion = "v1.37.2"
	// StagingVersion is the tag of k8s.io/api, k8s.io/client-go, ... that
	// belongs to KubernetesVersion.
	StagingVersion = "v0.37.2"
	EtcdVersion    = "v3.6.16"
	KwokVersion    = "v0.8.0"

	kubernetesModule = "k8s.io/kubernetes"
	etcdModule       = "go.etcd.io/etcd/server/v3"
	kwokModule       = "sigs.k8s.io/kwok"
	// buildDate is fixed so rebuilds are reproducible.
	buildDate = "2026-01-01T00:00:00Z"
)

// stagingModules are the modules k8s.io/kubernetes's own go.mod replaces
// with ./staging/src/... directories. A module that requires k8s.io/kubernetes
// must replace each of them with the published tag, or the build cannot
// resolve their v0.0.0 requirements. The list is the one of v1.37.2; a test
// checks it against that go.mod.
var stagingModules = []string{
	"k8s.io/api",
	"k8s.io/apiextensions-apiserver",
	"k8s.io/apimachinery",
	"k8s.io/apiserver",
	"k8s.io/cli-runtime",
	"k8s.io/client-go",
	"k8s.io/cloud-provider",
	"k8s.io/cluster-bootstrap",
	"k8s.io/code-generator",
	"k8s.io/component-base",
	"k8s.io/component-helpers",
	"k8s.io/controller-manager",
	"k8s.io/cri-api",
	"k8s.io/cri-client",
	"k8s.io/cri-streaming",
	"k8s.io/csi-translation-lib",
	"k8s.io/dynamic-resource-allocation",
	"k8s.io/endpointslice",
	"k8s.io/externaljwt",
	"k8s.io/kms",
	"k8s.io/kube-aggregator",
	"k8s.io/kube-controller-manager",
	"k8s.io/kube-proxy",
	"k8s.io/kube-scheduler",
	"k8s.io/kubectl",
	"k8s.io/kubelet",
	"k8s.io/metrics",
	"k8s.io/mount-utils",
	"k8s.io/pod-security-admission",
	"k8s.io/sample-apiserver",
	"k8s.io/sample-cli-plugin",
	"k8s.io/sample-controller",
	"k8s.io/streaming",
}

// CacheKey names the cache directory of this set of versions.
func CacheKey() string {
	return fmt.Sprintf("k8s-%s_etcd-%s_kwok-%s", KubernetesVersion, EtcdVersion, KwokVersion)
}

// kubeGoMod is the go.mod of the throwaway module that builds the
// Kubernetes control-plane binaries.
func kubeGoMod() string {
	var b strings.Builder
	fmt.Fprintf(&b, "module kloop.local/sandbox/kube\n\ngo 1.26.0\n\nrequire %s %s\n\nreplace (\n", kubernetesModule, KubernetesVersion)
	for _, m := range stagingModules {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, StagingVersion)
	}
	b.WriteString(")\n")
	return b.String()
}

// etcdGoMod is the go.mod of the throwaway module that builds etcd; `go
// install etcd@version` is refused because etcd's go.mod has replace
// directives.
func etcdGoMod() string {
	return fmt.Sprintf("module kloop.local/sandbox/etcd\n\ngo 1.26\n\nrequire %s %s\n", etcdModule, EtcdVersion)
}

// kubeLDFlags stamps the version into k8s.io/component-base/version;
// without it the servers report v0.0.0-master, which clients reject.
func kubeLDFlags() string {
	const pkg = "k8s.io/component-base/version"
	major, minor := "", ""
	if parts := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	return strings.Join([]string{
		"-s", "-w",
		"-X", pkg + ".gitVersion=" + KubernetesVersion,
		"-X", pkg + ".gitMajor=" + major,
		"-X", pkg + ".gitMinor=" + minor,
		"-X", pkg + ".gitTreeState=clean",
		"-X", pkg + ".buildDate=" + buildDate,
	}, " ")
}

// stagingReplaces extracts the modules a k8s.io/kubernetes go.mod replaces
// with ./staging directories.
func stagingReplaces(goMod string) []string {
	var mods []string
	for _, line := range strings.Split(goMod, "\n") {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "replace "))
		if len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "./staging/") {
			mods = append(mods, fields[0])
		}
	}
	return mods
}
