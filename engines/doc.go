// Package engines implements the session's engine interfaces on the
// cluster: Claims (session.ClaimEngine) on the Leases of kube/claim, writing
// each claim's kubeconfig (0600) under the daemon's state directory;
// Intercepts (session.InterceptEngine) on kube/intercept, with a tunnel to
// every ready pod over Kubernetes port-forward, the pod's env and volumes
// from kube/env, and the outbound proxies of kube/intercept/proxy; and Env
// (session.EnvEngine) on kube/env. The daemon wires them into its sessions
// (cmd/kloop); session itself knows no cluster.
package engines
