package intercept

import (
	"context"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/workload"
)

// WorkloadInfo is one workload of a namespace, as a picker shows it.
type WorkloadInfo struct {
	Workload workload.Workload
	// Ready and Wanted are the ready and the desired replicas.
	Ready, Wanted int32
	// Ports are the app containers' declared ports; the agent's own
	// ports are left out, since nobody intercepts those.
	Ports []WorkloadPort
	// Agent is kloop's record on the workload, nil without an agent.
	Agent *Record
	// RecordErr is set when the workload carries a record that does not
	// read; Agent is then nil.
	RecordErr error
}

// WorkloadPort is one container port.
type WorkloadPort struct {
	Container string
	Port      int32
	Name      string
	Protocol  string
}

// Workloads reads the Deployments and StatefulSets of the namespace, with or
// without an agent, sorted by kind then name. An RBAC refusal is a
// *ForbiddenError.
func (in *Injector) Workloads(ctx context.Context) ([]WorkloadInfo, error) {
	cs, ns := in.Client, in.Namespace
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "deployments", ns)
	}
	stss, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "statefulsets", ns)
	}
	var out []WorkloadInfo
	for i := range deps.Items {
		d := &deps.Items[i]
		out = append(out, listed(workload.Workload{Kind: workload.Deployment, Name: d.Name}, d.Spec.Replicas, d.Status.ReadyReplicas, &d.ObjectMeta, &d.Spec.Template))
	}
	for i := range stss.Items {
		s := &stss.Items[i]
		out = append(out, listed(workload.Workload{Kind: workload.StatefulSet, Name: s.Name}, s.Spec.Replicas, s.Status.ReadyReplicas, &s.ObjectMeta, &s.Spec.Template))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Workload.Kind != out[j].Workload.Kind {
			return out[i].Workload.Kind < out[j].Workload.Kind
		}
		return out[i].Workload.Name < out[j].Workload.Name
	})
	return out, nil
}

func listed(w workload.Workload, replicas *int32, ready int32, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) WorkloadInfo {
	l := WorkloadInfo{Workload: w, Ready: ready, Wanted: 1}
	if replicas != nil {
		l.Wanted = *replicas
	}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == AgentContainer {
			continue
		}
		for _, p := range c.Ports {
			proto := string(p.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			l.Ports = append(l.Ports, WorkloadPort{Container: c.Name, Port: p.ContainerPort, Name: p.Name, Protocol: proto})
		}
	}
	// One workload with a damaged record must not hide the others from
	// the picker: its error travels with it.
	l.Agent, l.RecordErr = readRecord(meta.Annotations)
	return l
}
