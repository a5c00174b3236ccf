// Package agentimage_test is the agent image end to end on the sandbox:
// `kloop agent-image push` to a real registry on loopback, the daemon
// pointed at it, and an intercept whose pods run the agent the stand-in
// runner pulled from there, as a kubelet would.
package agentimage_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/internal/agentimage"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

func TestMain(m *testing.M) { cluster.Main(m) }

var kloopBinary = editor.NewBinary("kloop-agentimage-test-bin")

// version is linked into the pushed agent; the locally built kloop says
// "devel", so the agent's version tells which one runs.
const version = "v0.0.0-e2e.agentimage"

const agentContainer = "kloop-agent"

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type pushOutput struct {
	Ref, Digest, Pinned, Version string
	Platforms                    []string
}

// TestInterceptRunsTheAgentPulledFromTheRegistry: push the agent image
// through the CLI, point the daemon at its tag, intercept orders, and the
// pods' agent is the pushed one: the stand-in runner resolved the tag to
// the pushed digest (recorded as the container's imageID, as a kubelet
// does), and the binary it runs reports the pushed version.
func TestInterceptRunsTheAgentPulledFromTheRegistry(t *testing.T) {
	reg := cluster.StartRegistry(t)
	f := orders.New(t, kloopBinary.Path(t), cluster.WithRegistry(reg, agentimage.Verify))

	// Two cross-builds (from the build cache after the first run): the
	// timeout only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	push := f.Daemon.Command(ctx, "agent-image", "push", reg.Host+"/kloop/agent", "--version", version, "-o", "json")
	push.Dir = repoRoot()
	var stderr strings.Builder
	push.Stderr = &stderr
	stdout, err := push.Output()
	if err != nil {
		t.Fatalf("agent-image push: %v\n%s%s", err, stdout, stderr.String())
	}
	var out pushOutput
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("push -o json: %v\n%s", err, stdout)
	}
	wantRef := reg.Host + "/kloop/agent:" + version
	if out.Ref != wantRef || !strings.HasPrefix(out.Digest, "sha256:") || out.Pinned != wantRef+"@"+out.Digest {
		t.Fatalf("push printed ref %q digest %q pinned %q, want %s tagged with the version", out.Ref, out.Digest, out.Pinned, wantRef)
	}
	if !slices.Equal(out.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("pushed platforms %q", out.Platforms)
	}

	// By tag: the runner must resolve it to the digest itself.
	f.Daemon.Extra = append(f.Daemon.Extra, "KLOOP_AGENT_IMAGE="+out.Ref)
	f.MustKloop(t, "intercept", "orders", "--detach")
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %d %s, want the laptop's build", code, body)
	}

	wantID := reg.Host + "/kloop/agent@" + out.Digest
	pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	agents := 0
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || !hasContainer(&pod, agentContainer) {
			continue
		}
		agents++
		cs := containerStatus(&pod, agentContainer)
		if cs == nil || cs.ImageID != wantID || cs.Image != out.Ref {
			t.Errorf("pod %s: agent status %+v, want image %s and imageID %s", pod.Name, cs, out.Ref, wantID)
		}
	}
	if agents == 0 {
		t.Fatal("no orders pod has the agent")
	}
	var ran int
	for _, p := range f.StandIns.Processes() {
		if p.Container != agentContainer || !p.Running() {
			continue
		}
		ran++
		if p.ImageID != wantID {
			t.Errorf("agent stand-in of %s runs image %q, want %s", p.Pod, p.ImageID, wantID)
		}
		v, err := exec.Command(p.Argv[0], "version").Output()
		if err != nil || strings.TrimSpace(string(v)) != "kloop "+version {
			t.Errorf("agent binary %s of %s says %q (%v), want the pushed kloop %s", p.Argv[0], p.Pod, v, err, version)
		}
		if !slices.Equal(p.Argv[1:2], []string{"agent"}) {
			t.Errorf("agent stand-in argv %q", p.Argv)
		}
	}
	if ran == 0 {
		t.Error("no agent stand-in runs")
	}
	f.MustKloop(t, "leave", "orders")
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "" {
		t.Errorf("after leave: %d %s, want the app's answer", code, body)
	}
}

// TestWrongAgentImageFailsTheInterceptAndRestores: a reference the
// registry does not have (nothing was pushed: NAME_UNKNOWN). The stand-in
// runner pulls it as a kubelet would and leaves the agent container waiting
// in ErrImagePull with the registry's answer and a kubelet Failed event;
// `kloop intercept` reads that and fails at once (not at the rollout
// timeout) naming the image, the registry's answer and the fix, and the
// workload and its Service are left exactly as they were.
func TestWrongAgentImageFailsTheInterceptAndRestores(t *testing.T) {
	reg := cluster.StartRegistry(t)
	f := orders.New(t, kloopBinary.Path(t), cluster.WithRegistry(reg, agentimage.Verify))
	wrong := reg.Host + "/kloop/agent:v9.9.9-never-pushed"
	f.Daemon.Extra = append(f.Daemon.Extra, "KLOOP_AGENT_IMAGE="+wrong)
	tmpl, ports := f.Specs(t)

	r := f.Kloop(t, "intercept", "orders", "--detach")
	if r.Code == 0 {
		t.Fatalf("intercept with an agent image nobody pushed succeeded:\n%s%s", r.Stdout, r.Stderr)
	}
	for _, want := range []string{wrong, "NAME_UNKNOWN", "kloop agent-image push"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("intercept error does not say %q:\n%s", want, r.Stderr)
		}
	}
	if tmpl2, ports2 := f.Specs(t); !equality.Semantic.DeepEqual(tmpl, tmpl2) || !equality.Semantic.DeepEqual(ports, ports2) {
		t.Errorf("the failed intercept left the workload changed:\ntemplate %+v\nwant %+v\nports %+v\nwant %+v", tmpl2, tmpl, ports2, ports)
	}
	orders.Eventually(t, "orders answered by its own pods again", func() bool {
		code, a, _, err := f.TryGetOrder(t)
		return err == nil && code == 200 && a.Build == ""
	})
	if st := f.Status(t); len(st.Intercepts) != 0 {
		t.Errorf("status after the failed intercept lists intercepts %+v", st.Intercepts)
	}

	evs, err := f.Env.Client.CoreV1().Events(f.Env.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var failed bool
	for _, e := range evs.Items {
		if e.Reason == "Failed" && e.Type == corev1.EventTypeWarning && e.Source.Component == "kubelet" &&
			strings.HasPrefix(e.Message, `Failed to pull image "`+wrong+`"`) && e.InvolvedObject.FieldPath == "spec.containers{kloop-agent}" {
			failed = true
		}
	}
	if !failed {
		t.Errorf("no kubelet Failed event for the pull of %s", wrong)
	}
}

func hasContainer(pod *corev1.Pod, name string) bool {
	return slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == name })
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}
