package intercept

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Annotations and labels kloop writes. Everything needed to undo an
// intercept is in them, so `kloop leave --all` works from the cluster alone.
const (
	// AnnotationIntercept on the workload holds the Record (JSON).
	AnnotationIntercept = "kloop.dev/intercept"
	// AnnotationOriginalTemplate on the workload holds its pod template as
	// it was before the intercept (JSON).
	AnnotationOriginalTemplate = "kloop.dev/original-template"
	// AnnotationOriginalPorts on a Service holds its ports as they were
	// before the intercept (JSON).
	AnnotationOriginalPorts = "kloop.dev/original-ports"
	// AnnotationInterceptedBy on a Service names the workload ("deployment/orders").
	AnnotationInterceptedBy = "kloop.dev/intercepted-by"
	// AnnotationInterceptID on the pod template identifies one intercept,
	// so tunnels go only to pods that carry its agent and token.
	AnnotationInterceptID = "kloop.dev/intercept-id"
	// LabelIntercept on the token Secret names the workload's intercept.
	LabelIntercept = "kloop.dev/intercept"
	// AgentContainer is the name of the injected sidecar.
	AgentContainer = "kloop-agent"
	// TokenKey is the token's key in the Secret, and the file name the
	// agent reads.
	TokenKey = "token"
	// TokenMountPath is where the Secret is mounted in the agent container
	// (also its working directory, so --token-file is relative).
	TokenMountPath = "/var/run/kloop"
)

// Record is what kloop stores on an intercepted workload.
type Record struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
	// ID is unique per intercept; pods with the agent carry it.
	ID string `json:"id"`
	// Secret holds the tunnel token (key "token").
	Secret      string       `json:"secret"`
	Container   string       `json:"container"`
	Ports       []PortRecord `json:"ports"`
	Header      string       `json:"header,omitempty"`
	Image       string       `json:"image"`
	ControlPort int          `json:"controlPort"`
	// Services whose targetPorts point at the agent.
	Services []string `json:"services"`
}

// PortRecord is one intercepted container port.
type PortRecord struct {
	Name      string `json:"name,omitempty"`
	Port      int    `json:"port"`
	AgentPort int    `json:"agentPort"`
	Protocol  string `json:"protocol"`
}

// AppPorts are the intercepted container ports.
func (r Record) AppPorts() []int {
	ports := make([]int, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = p.Port
	}
	return ports
}

// AgentPort returns the agent's port for container port app.
func (r Record) AgentPort(app int) (int, bool) {
	for _, p := range r.Ports {
		if p.Port == app {
			return p.AgentPort, true
		}
	}
	return 0, false
}

func readRecord(annotations map[string]string) (*Record, error) {
	v, ok := annotations[AnnotationIntercept]
	if !ok {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationIntercept, err)
	}
	return &r, nil
}

func readTemplate(annotations map[string]string) (*corev1.PodTemplateSpec, error) {
	v, ok := annotations[AnnotationOriginalTemplate]
	if !ok {
		return nil, fmt.Errorf("annotation %s is missing, so the original pod template is unknown", AnnotationOriginalTemplate)
	}
	var t corev1.PodTemplateSpec
	if err := json.Unmarshal([]byte(v), &t); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationOriginalTemplate, err)
	}
	return &t, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // API types always marshal
	}
	return string(b)
}

func unmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
