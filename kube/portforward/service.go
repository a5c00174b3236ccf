package portforward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// serviceForms is how an error spells the names ServiceDialer takes.
const serviceForms = "NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc or NAME.NAMESPACE.svc.cluster.local"

// ServiceDialer reaches a cluster's Services by name from outside the
// cluster, with nothing of kloop in it: it finds a ready pod behind the
// Service and port-forwards to the container port the Service's port
// targets, as `kubectl port-forward svc/NAME` does. Pod and Service IPs
// and hosts outside the cluster cannot be reached this way; they get an
// error saying so.
type ServiceDialer struct {
	Client kubernetes.Interface
	Pods   *Dialer
	// Namespace is the namespace of a bare NAME.
	Namespace string
}

// DialContext connects to addr (HOST:PORT, HOST a Service name) through
// the API server. It has the shape of proxy.DialFunc.
func (d *ServiceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s: only TCP reaches the cluster through port-forward", network, addr)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial %s: port %q is not a number from 1 to 65535", addr, portStr)
	}
	name, ns, err := ServiceHost(host, d.Namespace)
	if err != nil {
		return nil, err
	}
	svc, err := d.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: no Service %s in namespace %s; without an agent in the cluster (traffic none) only Services can be reached, by %s", host, name, ns, serviceForms)
	}
	if err != nil {
		return nil, fmt.Errorf("get Service %s/%s for %s: %w", ns, name, addr, err)
	}
	if len(svc.Spec.Selector) == 0 && svc.Spec.Type != corev1.ServiceTypeExternalName {
		return nil, fmt.Errorf("service %s/%s has no selector, so its pods cannot be found to port-forward to", ns, name)
	}
	var pods []corev1.Pod
	if svc.Spec.Type != corev1.ServiceTypeExternalName {
		list, err := d.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
		if err != nil {
			return nil, fmt.Errorf("list the pods of Service %s/%s: %w", ns, name, err)
		}
		pods = list.Items
	}
	pod, podPort, err := ServiceTarget(svc, port, pods)
	if err != nil {
		return nil, err
	}
	c, err := d.Pods.Dial(ctx, ns, pod, podPort)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s port %d: %w", ns, name, port, err)
	}
	return c, nil
}

// ServiceHost reads host as a Service's DNS name: NAME (in namespace),
// NAME.NS, NAME.NS.svc or NAME.NS.svc.DOMAIN (cluster.local, or the
// cluster's own domain), with or without a final dot.
func ServiceHost(host, namespace string) (name, ns string, err error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return "", "", fmt.Errorf("%s is an IP address: without an agent in the cluster (traffic none) only Services can be reached, by name (%s); pod and Service IPs cannot", host, serviceForms)
	}
	parts := strings.Split(h, ".")
	switch {
	case len(parts) == 1:
		name, ns = parts[0], namespace
	case len(parts) == 2 || (len(parts) >= 3 && parts[2] == "svc" && !slices.Contains(parts[3:], "")):
		name, ns = parts[0], parts[1]
	default:
		return "", "", fmt.Errorf("%s is not a Service name: without an agent in the cluster (traffic none) only Services can be reached, by %s", host, serviceForms)
	}
	if ns == "" {
		return "", "", fmt.Errorf("%s: no namespace to look the Service up in: name it, as %s.NAMESPACE", host, name)
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return "", "", fmt.Errorf("%s is not a Service name (%s): %s", host, strings.Join(errs, "; "), serviceForms)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("%s is not a Service name (namespace %q: %s): %s", host, ns, strings.Join(errs, "; "), serviceForms)
	}
	return name, ns, nil
}

// ServiceTarget picks what a connection to port of svc reaches: a ready
// pod among pods (the ones its selector selects) and the container port
// the Service port's targetPort names, by number or by name.
func ServiceTarget(svc *corev1.Service, port int, pods []corev1.Pod) (pod string, podPort int, err error) {
	what := fmt.Sprintf("service %s/%s", svc.Namespace, svc.Name)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "", 0, fmt.Errorf("%s is an ExternalName Service (for %s), which has no pods to port-forward to", what, svc.Spec.ExternalName)
	}
	var sp *corev1.ServicePort
	var have []string
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		have = append(have, strconv.Itoa(int(p.Port)))
		if int(p.Port) == port {
			sp = p
		}
	}
	if sp == nil {
		if len(have) == 0 {
			return "", 0, fmt.Errorf("%s has no TCP port", what)
		}
		return "", 0, fmt.Errorf("%s has no TCP port %d; its ports are %s", what, port, strings.Join(have, ", "))
	}
	ready := 0
	for i := range pods {
		p := &pods[i]
		if !podReady(p) {
			continue
		}
		ready++
		switch {
		case sp.TargetPort.Type == 0 && sp.TargetPort.IntVal == 0:
			// targetPort left out: the Service port itself.
			return p.Name, port, nil
		case sp.TargetPort.Type == 0:
			return p.Name, int(sp.TargetPort.IntVal), nil
		}
		if n := namedPort(p, sp.TargetPort.StrVal); n != 0 {
			return p.Name, n, nil
		}
	}
	if ready == 0 {
		return "", 0, fmt.Errorf("%s has no ready pod (of %d selected) to port-forward to", what, len(pods))
	}
	return "", 0, fmt.Errorf("%s port %d targets the container port named %q, and none of its %d ready pods has a port of that name", what, port, sp.TargetPort.StrVal, ready)
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func namedPort(p *corev1.Pod, name string) int {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return int(cp.ContainerPort)
			}
		}
	}
	return 0
}
