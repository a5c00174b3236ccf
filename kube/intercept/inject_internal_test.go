package intercept

import (
	"path"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
)

func TestParseWorkload(t *testing.T) {
	for in, want := range map[string]Workload{
		"orders":             {Deployment, "orders"},
		"deployment/orders":  {Deployment, "orders"},
		"deploy/orders":      {Deployment, "orders"},
		"statefulset/ledger": {StatefulSet, "ledger"},
		"sts/ledger":         {StatefulSet, "ledger"},
	} {
		got, err := ParseWorkload(in)
		if err != nil || got != want {
			t.Errorf("ParseWorkload(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"daemonset/x", "deployment/", "a/b/c", ""} {
		if _, err := ParseWorkload(bad); err == nil {
			t.Errorf("ParseWorkload(%q) accepted", bad)
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
	spec := Spec{Workload: Workload{Deployment, "app"}}
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
