package fidelity_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/test/cluster"
)

// slowMain listens only after a while, as a service that loads its data
// first does: the window in which a pod that were Ready too early would
// refuse a client.
const slowMain = `package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	time.Sleep(2 * time.Second)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "served by %s", os.Getenv("HOSTNAME")) })
	log.Fatal(http.ListenAndServe(":8080", nil))
}
`

const slowManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: slow}
spec:
  replicas: 3
  selector: {matchLabels: {app: slow}}
  template:
    metadata: {labels: {app: slow}}
    spec:
      containers:
        - name: slow
          image: example.com/slow:v1
          ports: [{name: http, containerPort: 8080}]
`

// TestPodIsReadyOnlyOnceItCanBePortForwarded watches the pods of a
// Deployment whose program listens two seconds after it starts: each pod
// is seen Running but not Ready first, and the moment it is seen Ready a
// single port-forward and GET, without retries, is answered by that pod.
func TestPodIsReadyOnlyOnceItCanBePortForwarded(t *testing.T) {
	env := cluster.New(t)
	mod := t.TempDir()
	writeModule(t, mod, map[string]string{"go.mod": "module example.com/slow\n\ngo 1.26\n", "main.go": slowMain})
	images := cluster.DefaultImages()
	images["example.com/slow"] = cluster.Image{Binary: goBuild(t, mod, ".")}
	env.StartStandIns(t, images)
	ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
	defer cancel()
	w, err := env.Client.CoreV1().Pods(env.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: "app=slow"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := env.ApplyYAML(ctx, []byte(slowManifest)); err != nil {
		t.Fatal(err)
	}
	pf := portforward.NewDialer(env.Config)
	notReadyRunning := map[string]bool{}
	checked := map[string]bool{}
	for len(checked) < 3 {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-ctx.Done():
			t.Fatalf("only %d of 3 pods became Ready within %s", len(checked), cluster.WaitTimeout)
		}
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			t.Fatalf("watch: %v", ev.Object)
		}
		if checked[pod.Name] || pod.DeletionTimestamp != nil {
			continue
		}
		if !podReady(pod) {
			if pod.Status.Phase == corev1.PodRunning {
				notReadyRunning[pod.Name] = true
			}
			continue
		}
		checked[pod.Name] = true
		if !notReadyRunning[pod.Name] {
			t.Errorf("pod %s was Ready as soon as it ran, before its program could listen", pod.Name)
		}
		body, err := get(ctx, pf, env.Namespace, pod.Name, 8080, "/")
		if err != nil {
			t.Errorf("pod %s is Ready, but a port-forward to it right then failed: %v", pod.Name, err)
			continue
		}
		if want := "served by " + pod.Name; !strings.Contains(body, want) {
			t.Errorf("pod %s answered %q, want %q", pod.Name, body, want)
		}
	}
}
