package intercept

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kloop/kloop/kube/workload"
)

// Kubelet probes of the app never pass through the agent, so they never
// reach a laptop (paused or not): injection leaves the app container's
// probes as they were, and names no agent port, so a probe that names its
// port (port: http) still resolves to the app's own port. The agent's own
// readiness probe is a TCP connect, which the agent answers without
// telling the laptop (agent.TestProbesNeverReachTheLaptop).
func TestInjectionLeavesTheAppsProbesOnTheAppsPorts(t *testing.T) {
	probes := func() (*corev1.Probe, *corev1.Probe, *corev1.Probe) {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
			&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
			&corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}
	}
	live, ready, start := probes()
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: "app",
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9090}},
		LivenessProbe:  live,
		ReadinessProbe: ready,
		StartupProbe:   start,
	}}}}
	spec := Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "app"}}
	_, ports, err := choosePorts(spec, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := allocateAgentPorts(tmpl, ports, 7650); err != nil {
		t.Fatal(err)
	}
	injectAgent(tmpl, Record{ID: "abc", Secret: "s", Ports: ports, Image: DefaultImage(), ControlPort: 7650})
	app := tmpl.Spec.Containers[0]
	wantLive, wantReady, wantStart := probes()
	if !reflect.DeepEqual(app.LivenessProbe, wantLive) || !reflect.DeepEqual(app.ReadinessProbe, wantReady) || !reflect.DeepEqual(app.StartupProbe, wantStart) {
		t.Errorf("the app's probes changed: %+v %+v %+v", app.LivenessProbe, app.ReadinessProbe, app.StartupProbe)
	}
	if !reflect.DeepEqual(app.Ports, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9090}}) {
		t.Errorf("the app's ports changed: %+v", app.Ports)
	}
	for _, c := range tmpl.Spec.Containers[1:] {
		for _, p := range c.Ports {
			if p.Name == "http" || p.Name == "grpc" || p.ContainerPort == 8080 || p.ContainerPort == 9090 {
				t.Errorf("container %s declares port %+v, which a probe of the app could resolve to", c.Name, p)
			}
		}
	}
}
