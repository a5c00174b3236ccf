// Package env resolves the environment and the ConfigMap/Secret files of a
// workload's container exactly as the kubelet would build them, so that a
// process on the developer's machine starts with what the pod gets.
//
// # Resolution
//
// Resolve reads a Deployment or StatefulSet (WORKLOAD is deployment/NAME,
// statefulset/NAME or a bare NAME meaning a Deployment), picks a container
// (Options.Container, or the first one that is not the kloop-agent
// sidecar) and follows the kubelet's makeEnvironmentVariables:
//
//  1. envFrom sources in order (configMapRef/secretRef, keys with their
//     prefix); a later source overrides an earlier one;
//  2. env entries in order, each overriding what came before: a value has
//     its $(VAR) references expanded against what is defined so far ($$ is
//     a literal $, an undefined reference is left as written); valueFrom
//     reads configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef.
//
// A missing optional ConfigMap, Secret or key skips the variable; a missing
// required one is a *MissingRefError naming the object and key. envFrom
// keys that can never be environment variable names (empty, or containing
// '=' or a non-printable character) are skipped and listed in
// Result.Warnings; other keys are kept, as the kubelet keeps them since
// relaxed env var names. A value with a NUL byte (no process environment
// can hold one) is skipped with a warning. With Options.ServiceLinks the
// kubelet's service link variables (USERS_SERVICE_HOST, ...,
// KUBERNETES_SERVICE_HOST) are added and usable in $(VAR); they are off by
// default because they hold cluster IPs and make client libraries believe
// they run in a pod.
//
// The container spec (env, envFrom, resources, mounts) is the workload's
// pod template, which is what the next pod gets. fieldRef values
// (metadata.name/uid/labels/annotations, spec.nodeName, status.podIP(s),
// status.hostIP(s), ...) come from a Running pod of the workload when there
// is one; otherwise from the template, with a warning for every field only
// a pod has. resourceFieldRef limits without a container limit default to
// the allocatable of the pod's node, as the kubelet does.
//
// # Volumes
//
// With Options.Root set, the ConfigMap, Secret, projected (configMap,
// secret, downwardAPI sources), downwardAPI and emptyDir volumes the
// container mounts are written under Root at their mount paths (a volume
// mounted at /etc/orders appears at $KLOOP_ROOT/etc/orders), honouring
// items, optional and subPath/subPathExpr. Directories are 0700 and files
// 0600: the permissions a Kubernetes mode grants anyone are given to the
// owner only, so 0644 becomes 0600, 0755 becomes 0700 and 0444 becomes
// 0400. The environment then includes KLOOP_ROOT. Root is owned by kloop:
// its previous content is replaced on every resolution, and a non-empty
// directory that kloop did not create is refused.
//
// # Output
//
// Result.Write renders the variables as dotenv (KEY="..." with \\, \", \n,
// \r, \$ and \` escapes, as godotenv and docker compose read them, and so that
// `set -a; . file` in a POSIX shell expands nothing), JSON (one
// flat object in resolution order) or shell (export KEY='...', for `. file`
// or eval). Every format carries multi-line values and quotes unchanged.
//
// # Secrets
//
// This package logs nothing. Values that come from a Secret (or expand
// one) are marked Var.Secret; Var's String and slog LogValue redact them,
// and no error or warning contains a value.
package env
