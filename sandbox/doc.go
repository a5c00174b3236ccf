// Package sandbox builds, caches and runs a real local Kubernetes control
// plane: kube-apiserver, kube-controller-manager and kube-scheduler from
// k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and kwok for fake
// nodes and pods. Everything is built from the Go module proxy once, kept in
// a cache keyed by the versions ($XDG_CACHE_HOME/kloop/sandbox/<key>/bin), and
// started on loopback with kwokctl's binary runtime.
//
// It is shared by `kloop sandbox up|down|status|build|run` and by the test
// harness in test/cluster (package sandbox/standin runs pods' containers as
// local processes):
//
//	binDir, err := sandbox.EnsureBinaries(ctx, sandbox.ProgressTo(os.Stderr))
//	c, err := sandbox.Up(ctx, sandbox.Options{Name: "demo", Nodes: 1})
//	// c.Kubeconfig is a self-contained kubeconfig file (0600).
//	err = sandbox.Down(ctx, sandbox.Options{Name: "demo"})
//
// Cache completeness is recorded in bin/.manifest.json (size, mtime and
// sha256 of each binary), written only after every binary was built and
// answered `--version` with the expected version. A cache without a valid
// manifest is partial or corrupt: its binaries are verified and only the
// missing or wrong ones are rebuilt. A lock file serializes builds between
// processes (two test binaries starting at once build only once).
//
// Clusters live under $XDG_STATE_HOME/kloop/sandbox (KWOK_WORKDIR is set to
// its kwok/ subdirectory so no other kwok state is touched). Every
// component binds 127.0.0.1 only, on ports chosen by Up; starts are
// serialized machine-wide (a lock in $TMPDIR) so concurrent test binaries
// never pick the same ports. A cluster left
// behind by a killed process is detected (dead components or a dead owner)
// and cleaned up before a new one is started; every wait is bounded.
package sandbox
