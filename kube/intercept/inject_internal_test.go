package intercept

import (
	"path"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/workload"
)

// What an intercept writes to the cluster names the workload as it did
// before the kinds became workload.Kind: the Secret's label and name in
// lowercase, the owner reference with the API kind.
func TestWorkloadNamesInTheCluster(t *testing.T) {
	d := workload.Workload{Kind: workload.Deployment, Name: "orders"}
	s := workload.Workload{Kind: workload.StatefulSet, Name: "ledger"}
	for got, want := range map[string]string{
		secretLabel(d):      "deployment.orders",
		secretLabel(s):      "statefulset.ledger",
		secretName(d, "x1"): "kloop-d-orders-x1",
		secretName(s, "x1"): "kloop-s-ledger-x1",
		d.Kind.Title():      "Deployment",
		s.Kind.Title():      "StatefulSet",
		d.Kind.Plural():     "deployments",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// The injected container is what `kloop agent` accepts: every --forward
// parses, the control address is loopback, and the token file resolves to
// the mounted Secret's key.
func TestInjectedAgentMatchesTheAgentsFlags(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: "app",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "tcp-db", ContainerPort: 7651}, {Name: "metrics", ContainerPort: 9090}},
	}}}}
	spec := Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "app"}}
	ctr, ports, err := choosePorts(spec, tmpl)
	if err != nil || ctr.Name != "app" || len(ports) != 3 {
		t.Fatalf("choosePorts: %v %v %v", ctr, ports, err)
	}
	if ports[1].Protocol != tunnel.ProtoTCP || ports[0].Protocol != tunnel.ProtoHTTP {
		t.Errorf("protocols %+v: want tcp-db as tcp, http as http", ports)
	}
	if err := allocateAgentPorts(tmpl, ports, 7650); err != nil {
		t.Fatal(err)
	}
	rec := Record{ID: "abc", Secret: "s", Ports: ports, Image: DefaultImage(), ControlPort: 7650}
	injectAgent(tmpl, rec)
	if tmpl.Annotations[AnnotationInterceptID] != "abc" {
		t.Errorf("template annotations %v", tmpl.Annotations)
	}
	c := tmpl.Spec.Containers[1]
	if c.Name != AgentContainer || c.Image != DefaultImage() || c.Args[0] != "agent" {
		t.Fatalf("agent container %+v", c)
	}
	var forwards []agent.Forward
	var control, tokenFile string
	for i := 1; i < len(c.Args); i += 2 {
		switch c.Args[i] {
		case "--forward":
			f, err := agent.ParseForward(c.Args[i+1])
			if err != nil {
				t.Errorf("agent rejects %q: %v", c.Args[i+1], err)
			}
			forwards = append(forwards, f)
		case "--control":
			control = c.Args[i+1]
		case "--token-file":
			tokenFile = c.Args[i+1]
		default:
			t.Errorf("unexpected arg %q", c.Args[i])
		}
	}
	for _, f := range forwards {
		if slices.Contains([]int{7650, 8080, 7651, 9090}, f.ListenPort) {
			t.Errorf("agent port %d collides with a port of the pod", f.ListenPort)
		}
	}
	if len(forwards) != 3 || forwards[1].Protocol != tunnel.ProtoTCP || forwards[1].AppPort() != 7651 {
		t.Errorf("forwards %+v", forwards)
	}
	if control != "127.0.0.1:7650" {
		t.Errorf("control %q", control)
	}
	if len(c.VolumeMounts) != 1 || path.Join(c.WorkingDir, tokenFile) != path.Join(c.VolumeMounts[0].MountPath, TokenKey) {
		t.Errorf("token file %q in %q does not name the mounted Secret's key: %+v", tokenFile, c.WorkingDir, c.VolumeMounts)
	}
	v := tmpl.Spec.Volumes[len(tmpl.Spec.Volumes)-1]
	if v.Name != c.VolumeMounts[0].Name || v.Secret == nil || v.Secret.SecretName != "s" {
		t.Errorf("token volume %+v", v)
	}
	if c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("env %+v", c.Env)
	}
}
