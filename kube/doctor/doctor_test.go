package doctor

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/intercept"
)

func pod(name string, ready bool, containers ...corev1.Container) corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: containers},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
}

func container(name string, ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: name, Ports: ports}
}

func TestPickPod(t *testing.T) {
	tcp := func(p int32) corev1.ContainerPort { return corev1.ContainerPort{ContainerPort: p} }
	udp := corev1.ContainerPort{ContainerPort: 53, Protocol: corev1.ProtocolUDP}
	tests := []struct {
		name     string
		pods     []corev1.Pod
		wantPod  string
		wantPort int
	}{
		{"no pods", nil, "", 0},
		{"not ready", []corev1.Pod{pod("a", false, container("app", tcp(80)))}, "", 0},
		{"no TCP port", []corev1.Pod{pod("a", true, container("dns", udp))}, "", 0},
		{"the first by name", []corev1.Pod{pod("b", true, container("app", tcp(81))), pod("a", true, container("app", tcp(80)))}, "a", 80},
		{"a pod without the agent first", []corev1.Pod{
			pod("a", true, container("app", tcp(80)), container(intercept.AgentContainer, tcp(7650))),
			pod("b", true, container("app", tcp(8080))),
		}, "b", 8080},
		{"else one with the agent", []corev1.Pod{pod("a", true, container("app", tcp(80)), container(intercept.AgentContainer, tcp(7650)))}, "a", 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, port, ok := pickPod(tt.pods)
			if p != tt.wantPod || port != tt.wantPort || ok != (tt.wantPod != "") {
				t.Errorf("pickPod = %q, %d, %v; want %q, %d", p, port, ok, tt.wantPod, tt.wantPort)
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	tests := []struct {
		statuses []string
		want     bool
	}{
		{nil, true},
		{[]string{OK, Warn}, true},
		{[]string{OK, Fail, Warn}, false},
	}
	for _, tt := range tests {
		var fs []Finding
		for _, s := range tt.statuses {
			fs = append(fs, Finding{Status: s})
		}
		if got := Healthy(fs); got != tt.want {
			t.Errorf("Healthy(%v) = %v, want %v", tt.statuses, got, tt.want)
		}
	}
}
