package intercept

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/workload"
)

func waiting(name, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: name + ":v1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "status says " + reason}}}
}

func TestFailingContainer(t *testing.T) {
	tests := []struct {
		name     string
		statuses []corev1.ContainerStatus
		want     string // container name, "" for none
	}{
		{"none waiting", []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}, ""},
		{"still creating", []corev1.ContainerStatus{waiting(AgentContainer, "ContainerCreating")}, ""},
		{"agent pull error", []corev1.ContainerStatus{waiting("app", "ContainerCreating"), waiting(AgentContainer, "ErrImagePull")}, AgentContainer},
		{"agent back-off", []corev1.ContainerStatus{waiting(AgentContainer, "ImagePullBackOff")}, AgentContainer},
		{"invalid name", []corev1.ContainerStatus{waiting(AgentContainer, "InvalidImageName")}, AgentContainer},
		{"the agent is named over the app", []corev1.ContainerStatus{waiting("app", "CreateContainerError"), waiting(AgentContainer, "ErrImagePull")}, AgentContainer},
		{"the app alone", []corev1.ContainerStatus{waiting("app", "CreateContainerConfigError")}, "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, ok := failingContainer(&corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: tt.statuses}})
			if got := map[bool]string{true: cs.Name}[ok]; got != tt.want {
				t.Errorf("failingContainer = %q (%v), want %q", cs.Name, ok, tt.want)
			}
		})
	}
}

func TestEventMessagePrefersThePullFailure(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(1700000000+int64(s), 0)) }
	ev := func(reason, msg, fieldPath string, s int) corev1.Event {
		return corev1.Event{Type: corev1.EventTypeWarning, Reason: reason, Message: msg, LastTimestamp: at(s),
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", FieldPath: fieldPath}}
	}
	agent := "spec.containers{" + AgentContainer + "}"
	tests := []struct {
		name string
		evs  []corev1.Event
		want string
	}{
		{"no events", nil, ""},
		{"the failure over the back-off and the bare reason", []corev1.Event{
			ev("BackOff", `Back-off pulling image "r/agent:v1"`, agent, 9),
			ev("Failed", "Error: ErrImagePull", agent, 8),
			ev("Failed", `Failed to pull image "r/agent:v1": not found`, agent, 7),
		}, `Failed to pull image "r/agent:v1": not found`},
		{"the newest failure", []corev1.Event{
			ev("Failed", `Failed to pull image "r/agent:v1": old`, agent, 1),
			ev("Failed", `Failed to pull image "r/agent:v1": new`, agent, 5),
		}, `Failed to pull image "r/agent:v1": new`},
		{"another container's events are not the agent's", []corev1.Event{
			ev("Failed", `Failed to pull image "app:v1"`, "spec.containers{app}", 5),
			ev("BackOff", `Back-off pulling image "r/agent:v1"`, agent, 1),
		}, `Back-off pulling image "r/agent:v1"`},
		{"normal events are ignored", []corev1.Event{{Type: corev1.EventTypeNormal, Reason: "Pulling", Message: "Pulling image"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eventMessage(tt.evs, AgentContainer); got != tt.want {
				t.Errorf("eventMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImagePullErrorSaysTheFix(t *testing.T) {
	w := workload.Workload{Kind: workload.Deployment, Name: "orders"}
	e := &ImagePullError{Workload: w, Pod: "orders-1", Container: AgentContainer, Image: "r/agent:v1", Reason: "ErrImagePull", Message: "not found", RolledBack: true}
	for _, want := range []string{"deployment/orders", "orders-1", "r/agent:v1", "ErrImagePull", "not found", "kloop agent-image push r/agent:v1", "kloop pool agent-image REF", "agentImage", "KLOOP_AGENT_IMAGE", "restored"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("%q lacks %q", e.Error(), want)
		}
	}
}
