package standin

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// ResolveEnv exposes resolveEnv to the tests that need a cluster.
func ResolveEnv(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, c *corev1.Container) ([]envVar, error) {
	return resolveEnv(ctx, newObjectSource(client, pod.Namespace), pod, c)
}
