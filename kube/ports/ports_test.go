package ports

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kloop/kloop/kube/workload"
)

var inventory = workload.Workload{Kind: workload.Deployment, Name: "inventory"}

func port(name string, n int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: n}
}

func container(name string, ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: name, Ports: ports}
}

func template(cs ...corev1.Container) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "inventory"}},
		Spec:       corev1.PodSpec{Containers: cs},
	}
}

func service(name string, selector map[string]string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: selector, Ports: ports}}
}

var selectsInventory = map[string]string{"app": "inventory"}

func byName(port int32, target string) corev1.ServicePort {
	return corev1.ServicePort{Port: port, TargetPort: intstr.FromString(target)}
}

func byNumber(port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, TargetPort: intstr.FromInt32(target)}
}

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tmpl     *corev1.PodTemplateSpec
		services []corev1.Service
		want     int
		// wantErr lists what the error must say; empty means no error.
		wantErr []string
	}{
		{
			name: "the only port, no Service needed",
			tmpl: template(container("inventory", port("web", 8080))),
			want: 8080,
		},
		{
			name: "the only TCP port: UDP ports are not candidates",
			tmpl: template(container("dns", corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, port("http", 8080))),
			want: 8080,
		},
		{
			name: "the agent's ports do not count",
			tmpl: template(container("inventory", port("web", 8080)), container(AgentContainer, port("kloop-control", 7650))),
			want: 8080,
		},
		{
			name:     "a Service's named targetPort",
			tmpl:     template(container("inventory", port("web", 8080), port("metrics", 9100))),
			services: []corev1.Service{service("inventory", selectsInventory, byName(80, "web"))},
			want:     8080,
		},
		{
			name:     "a Service's numbered targetPort",
			tmpl:     template(container("inventory", port("web", 8080), port("metrics", 9100))),
			services: []corev1.Service{service("inventory", selectsInventory, byNumber(80, 9100))},
			want:     9100,
		},
		{
			name:     "a Service without targetPort sends to its own port",
			tmpl:     template(container("inventory", port("", 8080), port("", 9100))),
			services: []corev1.Service{service("inventory", selectsInventory, corev1.ServicePort{Port: 8080})},
			want:     8080,
		},
		{
			name: "two Services on one port",
			tmpl: template(container("inventory", port("web", 8080), port("metrics", 9100))),
			services: []corev1.Service{
				service("inventory", selectsInventory, byName(80, "web")),
				service("inventory-public", selectsInventory, byNumber(443, 8080)),
			},
			want: 8080,
		},
		{
			name:     "a port of another container, targeted by name",
			tmpl:     template(container("proxy", port("admin", 15000)), container("inventory", port("web", 8080))),
			services: []corev1.Service{service("inventory", selectsInventory, byName(80, "web"))},
			want:     8080,
		},
		{
			name: "Services that select other pods are ignored",
			tmpl: template(container("inventory", port("web", 8080), port("metrics", 9100))),
			services: []corev1.Service{
				service("orders", map[string]string{"app": "orders"}, byNumber(80, 9100)),
				service("headless-all", nil, byNumber(80, 9100)),
				service("inventory", selectsInventory, byName(80, "web")),
			},
			want: 8080,
		},
		{
			name:    "no port declared",
			tmpl:    template(container("inventory")),
			wantErr: []string{"deployment/inventory declares no TCP container port", "containerPort"},
		},
		{
			name: "two ports, no Service",
			tmpl: template(container("inventory", port("web", 8080), port("metrics", 9100))),
			wantErr: []string{"deployment/inventory has 2 ports", "none of them is the target of a Service",
				"web 8080 (container inventory)", "metrics 9100 (container inventory)",
				"--port 8080[:LOCAL]", `port: "8080" under the intercept in .kloop.yaml`, `"port": "8080" in the launch configuration`},
		},
		{
			name: "Services target two ports",
			tmpl: template(container("inventory", port("web", 8080), port("grpc", 9090), port("metrics", 9100))),
			services: []corev1.Service{
				service("inventory", selectsInventory, byName(80, "web"), byName(9090, "grpc")),
			},
			wantErr: []string{"deployment/inventory has 2 ports and Services send traffic to more than one of them",
				"web 8080 (container inventory, Service inventory:80)", "grpc 9090 (container inventory, Service inventory:9090)",
				"--port 8080[:LOCAL]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Choose(inventory, tc.tmpl, tc.services)
			if len(tc.wantErr) == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("Choose = %d, %v; want %d", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Choose = %d, want an error saying %q", got, tc.wantErr)
			}
			if !errors.Is(err, ErrNoChoice) {
				t.Errorf("error %v does not match ErrNoChoice", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "metrics") && strings.Contains(tc.name, "Services target") {
				t.Errorf("error %q lists metrics, which no Service targets", err)
			}
		})
	}
}

func TestFindReadsTheWorkloadAndItsServices(t *testing.T) {
	tmpl := template(container("inventory", port("web", 8080), port("metrics", 9100)))
	sts := workload.Workload{Kind: workload.StatefulSet, Name: "inventory"}
	cs := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "inventory", Namespace: "dev-1"}, Spec: appsv1.DeploymentSpec{Template: *tmpl}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "inventory", Namespace: "dev-1"}, Spec: appsv1.StatefulSetSpec{Template: *tmpl}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "inventory", Namespace: "dev-1"},
			Spec: corev1.ServiceSpec{Selector: selectsInventory, Ports: []corev1.ServicePort{byName(80, "web")}}},
	)
	for _, w := range []workload.Workload{inventory, sts} {
		if got, err := Find(context.Background(), cs, "dev-1", w); err != nil || got != 8080 {
			t.Errorf("Find(%s) = %d, %v; want 8080 (the Service's targetPort web)", w, got, err)
		}
	}
	if _, err := Find(context.Background(), cs, "dev-2", inventory); err == nil || !strings.Contains(err.Error(), `deployment/inventory not found in namespace "dev-2"`) {
		t.Errorf("Find in another namespace: %v, want not found", err)
	}
}
