package env

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// serviceEnv returns the kubelet's service link variables
// (getServiceEnvVarMap + envvars.FromServices): for the "kubernetes"
// Service of namespace default always, and for every Service of the pod's
// namespace unless the pod sets enableServiceLinks: false. Services
// without a cluster IP are ignored.
func serviceEnv(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) (map[string]string, []string, error) {
	var services []corev1.Service
	var warnings []string
	master, err := client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	switch {
	case err == nil:
		services = append(services, *master)
	case apierrors.IsForbidden(err):
		warnings = append(warnings, `service links: not allowed to get services "kubernetes" in namespace "default"; KUBERNETES_SERVICE_* not set`)
	case apierrors.IsNotFound(err):
	default:
		return nil, nil, fmt.Errorf("service links: get service default/kubernetes: %w", err)
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		list, err := client.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{})
		switch {
		case err == nil:
			for _, s := range list.Items {
				if pod.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes" {
					continue
				}
				services = append(services, s)
			}
		case apierrors.IsForbidden(err):
			return nil, nil, &ForbiddenError{Verb: "list", Resource: "services", Namespace: pod.Namespace, For: "service link variables", Err: err}
		default:
			return nil, nil, fmt.Errorf("service links: list services in namespace %q: %w", pod.Namespace, err)
		}
	}
	m := map[string]string{}
	for i := range services {
		s := &services[i]
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		ip := s.Spec.ClusterIP
		m[prefix+"_SERVICE_HOST"] = ip
		m[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for j, p := range s.Spec.Ports {
			port := strconv.Itoa(int(p.Port))
			if p.Name != "" {
				m[prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = port
			}
			proto := string(corev1.ProtocolTCP)
			if p.Protocol != "" {
				proto = string(p.Protocol)
			}
			url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, port)
			if j == 0 {
				m[prefix+"_PORT"] = url
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			m[pp] = url
			m[pp+"_PROTO"] = strings.ToLower(proto)
			m[pp+"_PORT"] = port
			m[pp+"_ADDR"] = ip
		}
	}
	return m, warnings, nil
}
