package intercept_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/test/cluster"
)

const pullsManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: pulls
spec:
  replicas: 1
  # The rollout with the agent cannot finish before the pull failure is
  # reported, whatever the machine's load.
  minReadySeconds: 30
  selector:
    matchLabels: {app: pulls}
  template:
    metadata:
      labels: {app: pulls}
    spec:
      containers:
        - name: app
          image: example.com/pulls:v1
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: pulls
spec:
  selector: {app: pulls}
  ports: [{port: 80, targetPort: 8080}]
`

// TestAnAgentImageThatCannotBePulledFailsAtOnce: the kubelet's report of a
// failed pull of the agent image ends the intercept with the image, the
// kubelet's message and the fix, and the workload is restored, instead of a
// wait for the rollout timeout.
//
// kwok runs no kubelet and pulls nothing, so this test writes what a
// kubelet writes when a pull fails (the container waiting with
// ErrImagePull, the pod not ready, Warning events on the pod); everything
// else is the sandbox's real API server and controllers.
func TestAnAgentImageThatCannotBePulledFailsAtOnce(t *testing.T) {
	env := cluster.New(t)
	ctx := context.Background()
	if err := env.ApplyYAML(ctx, []byte(pullsManifest)); err != nil {
		t.Fatal(err)
	}
	env.WaitPodsRunning(t, "app=pulls", 1)
	d0, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, "pulls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	const image = "registry.invalid/kloop/agent:v0.0.1"
	const pullMessage = `rpc error: code = NotFound desc = failed to pull and unpack image "registry.invalid/kloop/agent:v0.0.1": not found`
	kubeletCtx, stopKubelet := context.WithCancel(ctx)
	defer stopKubelet()
	go fakePullFailures(kubeletCtx, t, env, "app=pulls", pullMessage)

	inj := &intercept.Injector{Client: env.Client, Namespace: env.Namespace}
	_, err = inj.Inject(ctx, intercept.Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "pulls"}, Holder: "alice@laptop", Image: image})
	t.Logf("error: %v", err)
	var pe *intercept.ImagePullError
	if !errors.Is(err, intercept.ErrImagePull) || !errors.As(err, &pe) {
		t.Fatalf("intercept with an agent image that cannot be pulled: %v; want an ImagePullError", err)
	}
	for _, want := range []string{image, "ErrImagePull", "Failed to pull image", "not found", "kloop agent-image push", "restored"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q", want)
		}
	}
	if pe.Container != intercept.AgentContainer || !pe.RolledBack {
		t.Errorf("ImagePullError = %+v; want the agent container, rolled back", pe)
	}
	d1, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, "pulls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d0.Spec.Template, d1.Spec.Template) {
		t.Errorf("pulls was not restored:\nbefore %+v\nafter  %+v", d0.Spec.Template, d1.Spec.Template)
	}
	svc, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "pulls", metav1.GetOptions{})
	if err != nil || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("Service pulls changed: %+v, %v", svc.Spec.Ports, err)
	}
}

// fakePullFailures plays the kubelet of a node that cannot pull the agent
// image: each pod with the agent gets the statuses and events a kubelet
// writes (kubelet/images/image_manager.go), once kwok has marked it Running.
func fakePullFailures(ctx context.Context, t *testing.T, env *cluster.Env, selector, message string) {
	done := map[string]bool{}
	for ctx.Err() == nil {
		pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				if done[p.Name] || p.Status.PodIP == "" {
					continue
				}
				var image string
				for _, c := range p.Spec.Containers {
					if c.Name == intercept.AgentContainer {
						image = c.Image
					}
				}
				if image == "" {
					continue
				}
				if err := failPull(ctx, env, p.Name, image, message); err != nil {
					t.Logf("fake kubelet: %v", err)
					continue
				}
				done[p.Name] = true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func failPull(ctx context.Context, env *cluster.Env, pod, image, message string) error {
	pods := env.Client.CoreV1().Pods(env.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		found := false
		for i := range p.Status.ContainerStatuses {
			cs := &p.Status.ContainerStatuses[i]
			if cs.Name == intercept.AgentContainer {
				found = true
				cs.Ready, cs.Image = false, image
				cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: message}}
			}
		}
		if !found {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: intercept.AgentContainer, Image: image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: message}}})
		}
		for i := range p.Status.Conditions {
			if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				c.Status, c.Reason = corev1.ConditionFalse, "ContainersNotReady"
			}
		}
		_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	p, err := pods.Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	for i, ev := range [][2]string{{"Failed", `Failed to pull image "` + image + `": ` + message}, {"Failed", "Error: ErrImagePull"}} {
		e := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: pod + ".pull" + string(rune('a'+i)), Namespace: env.Namespace},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: env.Namespace, Name: pod, UID: p.UID,
				FieldPath: "spec.containers{" + intercept.AgentContainer + "}"},
			Reason: ev[0], Message: ev[1], Type: corev1.EventTypeWarning, Count: 1,
			Source:         corev1.EventSource{Component: "kubelet", Host: p.Spec.NodeName},
			FirstTimestamp: now, LastTimestamp: now,
		}
		if _, err := env.Client.CoreV1().Events(env.Namespace).Create(ctx, e, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}
