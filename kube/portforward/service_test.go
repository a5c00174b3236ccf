package portforward_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kloop/kloop/kube/portforward"
)

func TestServiceHost(t *testing.T) {
	for _, tc := range []struct {
		host, name, ns string
		err            string
	}{
		{host: "users", name: "users", ns: "dev"},
		{host: "users.team-b", name: "users", ns: "team-b"},
		{host: "users.team-b.svc", name: "users", ns: "team-b"},
		{host: "users.team-b.svc.cluster.local", name: "users", ns: "team-b"},
		{host: "users.team-b.svc.cluster.local.", name: "users", ns: "team-b"},
		// A cluster with its own domain.
		{host: "users.team-b.svc.corp.example", name: "users", ns: "team-b"},
		// DNS is case-insensitive; Kubernetes names are lower case.
		{host: "Users.Team-B", name: "users", ns: "team-b"},
		{host: "10.244.0.7", err: "10.244.0.7 is an IP address"},
		{host: "[fd00::7]", err: "is an IP address"},
		{host: "fd00::7", err: "is an IP address"},
		{host: "users.team-b.pod", err: "users.team-b.pod is not a Service name"},
		{host: "users.team-b.svc..local", err: "is not a Service name"},
		{host: "www.example.org", err: "www.example.org is not a Service name"},
		{host: "9users", err: "9users is not a Service name"},
		{host: "users.team_b", err: `namespace "team_b"`},
	} {
		name, ns, err := portforward.ServiceHost(tc.host, "dev")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ServiceHost(%q) = %q, %q, %v; want an error containing %q", tc.host, name, ns, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || ns != tc.ns {
			t.Errorf("ServiceHost(%q) = %q, %q, %v; want %q, %q", tc.host, name, ns, err, tc.name, tc.ns)
		}
	}
	// A kubeconfig context without a namespace gives a bare name none.
	if _, _, err := portforward.ServiceHost("users", ""); err == nil || !strings.Contains(err.Error(), "name it, as users.NAMESPACE") {
		t.Errorf("ServiceHost(users) without a namespace: %v; want an error asking for users.NAMESPACE", err)
	}
}

func TestServiceTarget(t *testing.T) {
	pod := func(name string, ready bool, ports ...corev1.ContainerPort) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
		p.Spec.Containers = []corev1.Container{{Name: "app", Ports: ports}}
		p.Status.Phase = corev1.PodRunning
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
		return p
	}
	deleting := pod("going", true, corev1.ContainerPort{Name: "web", ContainerPort: 8080})
	deleting.DeletionTimestamp = &metav1.Time{}
	pending := pod("pending", true)
	pending.Status.Phase = corev1.PodPending
	svc := func(ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "users", Namespace: "dev"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "users"}, Ports: ports},
		}
	}
	web := corev1.ContainerPort{Name: "web", ContainerPort: 8081}
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		port    int
		pods    []corev1.Pod
		pod     string
		podPort int
		err     string
	}{
		{name: "targetPort by number", svc: svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}),
			port: 80, pods: []corev1.Pod{pod("a", true)}, pod: "a", podPort: 8080},
		{name: "targetPort left out is the port", svc: svc(corev1.ServicePort{Port: 8080}),
			port: 8080, pods: []corev1.Pod{pod("a", true)}, pod: "a", podPort: 8080},
		{name: "targetPort by name", svc: svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("web")}),
			port: 80, pods: []corev1.Pod{pod("a", true, web)}, pod: "a", podPort: 8081},
		{name: "the second of two ports", svc: svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}, corev1.ServicePort{Port: 9090, TargetPort: intstr.FromInt32(9191)}),
			port: 9090, pods: []corev1.Pod{pod("a", true)}, pod: "a", podPort: 9191},
		{name: "skips pods not ready, pending or going", svc: svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("web")}),
			port: 80, pods: []corev1.Pod{pod("a", false, web), deleting, pending, pod("b", true, web)}, pod: "b", podPort: 8081},
		{name: "no ready pod", svc: svc(corev1.ServicePort{Port: 80}),
			port: 80, pods: []corev1.Pod{pod("a", false), deleting}, err: "service dev/users has no ready pod (of 2 selected)"},
		{name: "no pod", svc: svc(corev1.ServicePort{Port: 80}), port: 80, err: "has no ready pod (of 0 selected)"},
		{name: "no such port", svc: svc(corev1.ServicePort{Port: 80}, corev1.ServicePort{Port: 443}),
			port: 8080, pods: []corev1.Pod{pod("a", true)}, err: "has no TCP port 8080; its ports are 80, 443"},
		{name: "UDP port only", svc: svc(corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP}),
			port: 53, pods: []corev1.Pod{pod("a", true)}, err: "has no TCP port"},
		{name: "named targetPort no pod has", svc: svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("grpc")}),
			port: 80, pods: []corev1.Pod{pod("a", true, web)}, err: `targets the container port named "grpc", and none of its 1 ready pods`},
		{name: "ExternalName", svc: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "dev"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.org"}},
			port: 5432, err: "ExternalName Service (for db.example.org)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, port, err := portforward.ServiceTarget(tc.svc, tc.port, tc.pods)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ServiceTarget = %q, %d, %v; want an error containing %q", pod, port, err, tc.err)
				}
				return
			}
			if err != nil || pod != tc.pod || port != tc.podPort {
				t.Fatalf("ServiceTarget = %q, %d, %v; want %q, %d", pod, port, err, tc.pod, tc.podPort)
			}
		})
	}
}
