// Package agentimage_test is the agent image end to end on the sandbox:
// `kloop agent-image push` to a real registry on loopback, the daemon
// pointed at it, and an intercept whose pods run the agent the stand-in
// runner pulled from there, as a kubelet would.
package agentimage_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
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

// TestWrongAgentImageLeavesTheContainerInErrImagePull: a reference the
// registry does not have (nothing was pushed: NAME_UNKNOWN) leaves the
// agent container waiting, first with ErrImagePull and the registry's
// answer, then in ImagePullBackOff, with the kubelet's events, which is
// what the pull-failure reporting reads; pushed meanwhile, the image runs
// at the next pull.
func TestWrongAgentImageLeavesTheContainerInErrImagePull(t *testing.T) {
	reg := cluster.StartRegistry(t)
	f := orders.New(t, kloopBinary.Path(t), cluster.WithRegistry(reg, agentimage.Verify))
	wrong := reg.Host + "/kloop/agent:v9.9.9-never-pushed"
	f.Daemon.Extra = append(f.Daemon.Extra, "KLOOP_AGENT_IMAGE="+wrong)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := f.Daemon.Command(ctx, "intercept", "orders", "--detach")
	cmd.Dir = f.WS
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, ok func(cs *corev1.ContainerStatus) bool) *corev1.ContainerStatus {
		t.Helper()
		deadline := time.Now().Add(cluster.WaitTimeout)
		var last []string
		for time.Now().Before(deadline) {
			pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
			if err != nil {
				t.Fatal(err)
			}
			last = last[:0]
			for _, pod := range pods.Items {
				if cs := containerStatus(&pod, agentContainer); cs != nil {
					last = append(last, pod.Name+": "+describe(cs))
					if ok(cs) {
						return cs
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("no agent container %s; last seen %q", what, last)
		return nil
	}
	waiting := func(reason string) func(cs *corev1.ContainerStatus) bool {
		return func(cs *corev1.ContainerStatus) bool {
			return cs.State.Waiting != nil && cs.State.Waiting.Reason == reason
		}
	}
	cs := waitFor("in ErrImagePull", waiting("ErrImagePull"))
	if msg := cs.State.Waiting.Message; !strings.Contains(msg, `"`+wrong+`"`) || !strings.Contains(msg, "NAME_UNKNOWN") {
		t.Errorf("ErrImagePull message %q does not name the image and the registry's answer", msg)
	}
	if cs.Ready || cs.ImageID != "" || cs.Image != wrong {
		t.Errorf("agent status %+v: want not ready, no imageID, image %s", cs, wrong)
	}
	pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if cs := containerStatus(&pod, agentContainer); cs == nil || cs.State.Waiting == nil {
			continue
		}
		// Running, as kwok left it, but not Ready: no Service sends it traffic.
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
				t.Errorf("pod %s with its agent not pulled is Ready=%s", pod.Name, c.Status)
			}
		}
		if pod.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s phase %s, want Running", pod.Name, pod.Status.Phase)
		}
	}
	cs = waitFor("in ImagePullBackOff", waiting("ImagePullBackOff"))
	if msg := cs.State.Waiting.Message; !strings.HasPrefix(msg, `Back-off pulling image "`+wrong+`"`) {
		t.Errorf("ImagePullBackOff message %q", msg)
	}
	for _, p := range f.StandIns.Processes() {
		if p.Container == agentContainer {
			t.Errorf("an agent stand-in runs in %s although its image cannot be pulled", p.Pod)
		}
	}
	// Once the image is there, the next pull (after the back-off) runs it:
	// here an image around the local kloop build, pushed under that tag.
	bin, err := os.ReadFile(kloopBinary.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	img, err := agentimage.Image(bin, v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, "devel", time.Unix(0, 0).UTC())
	if err != nil {
		t.Fatal(err)
	}
	idx, err := agentimage.Index([]v1.Image{img}, "devel")
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(wrong)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	digest, _ := idx.Digest()
	wantID := reg.Host + "/kloop/agent@" + digest.String()
	waitFor("running the image pushed meanwhile", func(cs *corev1.ContainerStatus) bool {
		return cs.State.Running != nil && cs.Ready && cs.ImageID == wantID
	})

	evs, err := f.Env.Client.CoreV1().Events(f.Env.Namespace).List(ctx, metav1.ListOptions{})
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

func describe(cs *corev1.ContainerStatus) string {
	switch {
	case cs.State.Waiting != nil:
		return "waiting " + cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
	case cs.State.Running != nil:
		return "running " + cs.ImageID
	default:
		return "terminated"
	}
}
