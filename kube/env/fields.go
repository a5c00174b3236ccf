package env

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podOnlyFields are the fieldRef paths that have no value before a pod
// exists.
var podOnlyFields = map[string]bool{
	"metadata.name": true, "metadata.uid": true, "spec.nodeName": true,
	"status.podIP": true, "status.podIPs": true, "status.hostIP": true, "status.hostIPs": true,
}

// fieldValue is the kubelet's podFieldSelectorRuntimeValue.
func (r *resolver) fieldValue(fs *corev1.ObjectFieldSelector, forWhat string) (string, error) {
	if fs.APIVersion != "" && fs.APIVersion != "v1" {
		return "", fmt.Errorf("fieldRef %s: unsupported pod version %q", fs.FieldPath, fs.APIVersion)
	}
	path := fs.FieldPath
	if path == "spec.host" {
		path = "spec.nodeName"
	}
	if !r.fromPod && podOnlyFields[path] {
		r.warnf("%s: no running pod of %s, so %s is empty", forWhat, r.workload, path)
	}
	return podField(r.pod, path)
}

// podField extracts a downward API field of pod, like the kubelet
// (podFieldSelectorRuntimeValue, then fieldpath.ExtractFieldPathAsString).
func podField(pod *corev1.Pod, path string) (string, error) {
	podIPs := make([]string, 0, len(pod.Status.PodIPs))
	for _, ip := range pod.Status.PodIPs {
		podIPs = append(podIPs, ip.IP)
	}
	podIP := pod.Status.PodIP
	if len(podIPs) > 0 {
		podIP = podIPs[0]
	} else if podIP != "" {
		podIPs = []string{podIP}
	}
	hostIPs := make([]string, 0, len(pod.Status.HostIPs))
	for _, ip := range pod.Status.HostIPs {
		hostIPs = append(hostIPs, ip.IP)
	}
	if len(hostIPs) == 0 && pod.Status.HostIP != "" {
		hostIPs = []string{pod.Status.HostIP}
	}
	switch path {
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		if len(hostIPs) == 0 {
			return "", nil
		}
		return hostIPs[0], nil
	case "status.hostIPs":
		return strings.Join(hostIPs, ","), nil
	case "status.podIP":
		return podIP, nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	}
	if base, key, ok := splitSubscript(path); ok {
		switch base {
		case "metadata.annotations":
			if errs := content.IsLabelKey(strings.ToLower(key)); len(errs) != 0 {
				return "", fmt.Errorf("fieldRef %s: invalid key subscript: %s", path, strings.Join(errs, "; "))
			}
			return pod.Annotations[key], nil
		case "metadata.labels":
			if errs := content.IsLabelKey(key); len(errs) != 0 {
				return "", fmt.Errorf("fieldRef %s: invalid key subscript: %s", path, strings.Join(errs, "; "))
			}
			return pod.Labels[key], nil
		}
		return "", fmt.Errorf("fieldRef %s: field does not support a subscript", path)
	}
	return "", fmt.Errorf("fieldRef %s: field not supported", path)
}

// splitSubscript splits "metadata.labels['key']".
func splitSubscript(path string) (string, string, bool) {
	if !strings.HasSuffix(path, "']") {
		return "", "", false
	}
	base, key, ok := strings.Cut(strings.TrimSuffix(path, "']"), "['")
	if !ok || base == "" {
		return "", "", false
	}
	return base, key, true
}

// formatMap is fieldpath.FormatMap: sorted key="quoted value" lines.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%v=%q", k, m[k])
	}
	return b.String()
}

// resourceValue is the kubelet's containerResourceRuntimeValue after
// defaultPodLimitsForDownwardAPI: a missing limit of cpu, memory or
// ephemeral-storage is the node's allocatable (or the pod-level limit).
// ok is false when that default is needed but the node cannot be read.
func (r *resolver) resourceValue(ctx context.Context, fs *corev1.ResourceFieldSelector, forWhat string) (string, bool, error) {
	c := r.container
	if fs.ContainerName != "" {
		c = findContainer(r.pod, fs.ContainerName)
		if c == nil {
			return "", false, fmt.Errorf("resourceFieldRef %s: container %s not found", fs.Resource, fs.ContainerName)
		}
	}
	c = c.DeepCopy()
	if strings.HasPrefix(fs.Resource, "limits.") && needsDefault(c, corev1.ResourceName(strings.TrimPrefix(fs.Resource, "limits."))) {
		alloc, err := r.allocatable(ctx)
		if err != nil {
			return "", false, err
		}
		if alloc == nil {
			r.warnf("%s: container %s has no %s and %s; not set", forWhat, c.Name, fs.Resource, r.nodeError)
			return "", false, nil
		}
		mergeLimits(c, alloc)
	}
	v, err := containerResourceValue(fs, c)
	return v, err == nil, err
}

func needsDefault(c *corev1.Container, name corev1.ResourceName) bool {
	switch name {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		q, ok := c.Resources.Limits[name]
		return !ok || q.IsZero()
	}
	return false
}

// allocatable returns what missing limits default to: the node's
// allocatable, with pod-level limits taking its place; nil (and
// r.nodeError) when the node is unknown or unreadable.
func (r *resolver) allocatable(ctx context.Context) (corev1.ResourceList, error) {
	if !r.nodeRead {
		r.nodeRead = true
		switch {
		case r.pod.Spec.NodeName == "":
			r.nodeError = "no running pod, so no node to take the allocatable from"
		case r.client == nil:
			r.nodeError = "the node cannot be read"
		default:
			node, err := r.client.CoreV1().Nodes().Get(ctx, r.pod.Spec.NodeName, metav1.GetOptions{})
			switch {
			case err == nil:
				r.node = node
			case apierrors.IsForbidden(err):
				r.nodeError = fmt.Sprintf("not allowed to get node %q for its allocatable (the kubelet's default)", r.pod.Spec.NodeName)
			case apierrors.IsNotFound(err):
				r.nodeError = fmt.Sprintf("node %q not found", r.pod.Spec.NodeName)
			default:
				return nil, fmt.Errorf("get node %q: %w", r.pod.Spec.NodeName, err)
			}
		}
	}
	if r.node == nil {
		return nil, nil
	}
	alloc := r.node.Status.Allocatable.DeepCopy()
	if r.pod.Spec.Resources != nil {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := r.pod.Spec.Resources.Limits[name]; ok && !q.IsZero() {
				if _, ok := alloc[name]; ok {
					alloc[name] = q.DeepCopy()
				}
			}
		}
	}
	return alloc, nil
}

// mergeLimits is resource.MergeContainerResourceLimits.
func mergeLimits(c *corev1.Container, alloc corev1.ResourceList) {
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := c.Resources.Limits[name]; !ok || q.IsZero() {
			if a, ok := alloc[name]; ok {
				c.Resources.Limits[name] = a.DeepCopy()
			}
		}
	}
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// containerResourceValue is resource.ExtractContainerResourceValue: the
// ceiling of the quantity divided by the divisor (default 1).
func containerResourceValue(fs *corev1.ResourceFieldSelector, c *corev1.Container) (string, error) {
	divisor := resource.MustParse("1")
	if !fs.Divisor.IsZero() {
		divisor = fs.Divisor
	}
	list := c.Resources.Limits
	kind, name, ok := strings.Cut(fs.Resource, ".")
	switch {
	case ok && kind == "requests":
		list = c.Resources.Requests
	case ok && kind == "limits":
	default:
		return "", fmt.Errorf("resourceFieldRef: unsupported container resource %q", fs.Resource)
	}
	q := list.Name(corev1.ResourceName(name), resource.BinarySI)
	switch {
	case name == string(corev1.ResourceCPU):
		return ceilDiv(float64(q.MilliValue()), float64(divisor.MilliValue())), nil
	case name == string(corev1.ResourceMemory), name == string(corev1.ResourceEphemeralStorage),
		strings.HasPrefix(name, corev1.ResourceHugePagesPrefix):
		return ceilDiv(float64(q.Value()), float64(divisor.Value())), nil
	}
	return "", fmt.Errorf("resourceFieldRef: unsupported container resource %q", fs.Resource)
}

func ceilDiv(a, b float64) string {
	return strconv.FormatInt(int64(math.Ceil(a/b)), 10)
}
