package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/portforward"
)

// Answer is what GET /orders/1 on the orders Service returned.
type Answer struct {
	Status int
	Body   string
	// Pod is the pod whose port the request was sent to (the Service's
	// choice); ServedBy is the pod name the answering program reports (its
	// POD_NAME, which the laptop's process gets from the pod's env too).
	Pod      string
	ServedBy string
	// Build is the workspace's marker ("" from the cluster's own image).
	Build string
	Item  string
	// Attempts is how many requests it took (transport errors and non-200
	// answers are retried); Retried is the last failure before the answer.
	Attempts int
	Retried  string
}

type ordersBody struct {
	Order    map[string]string `json:"order"`
	ServedBy string            `json:"servedBy"`
	Build    string            `json:"build"`
}

// caller sends requests to the orders Service as a cluster client does:
// to a ready pod behind the Service, at the Service's targetPort, through a
// real Kubernetes port-forward (what `kubectl port-forward svc/orders` does).
type caller struct {
	client    kubernetes.Interface
	pf        *portforward.Dialer
	namespace string
	wait      time.Duration
}

// get retries until a 200 answer arrives: kwok marks a new pod Ready before
// its stand-in serves, and the users service may start after orders. The
// bound only turns a hang into an error.
func (c *caller) get(ctx context.Context, accept func(Answer) bool) (Answer, error) {
	deadline := time.Now().Add(c.wait)
	var last Answer
	var lastErr error
	for attempt := 1; ; attempt++ {
		a, err := c.try(ctx)
		if err == nil && a.Status == http.StatusOK && (accept == nil || accept(a)) {
			a.Attempts = attempt
			if lastErr != nil {
				a.Retried = strings.TrimSpace(lastErr.Error())
			}
			return a, nil
		}
		if err == nil && a.Status == http.StatusOK {
			err = fmt.Errorf("not the awaited answer yet: %s", strings.TrimSpace(a.Body))
		}
		if err == nil {
			last, lastErr = a, fmt.Errorf("HTTP %d: %s", a.Status, a.Body)
		} else {
			lastErr = err
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("GET /orders/1 through the orders Service: no answer after %s; last: %v", c.wait, lastErr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *caller) try(ctx context.Context) (Answer, error) {
	pod, target, err := c.target(ctx)
	if err != nil {
		return Answer{}, err
	}
	// A request may wait at a breakpoint for as long as the demo holds it.
	client := &http.Client{Timeout: c.wait, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.pf.Dial(ctx, c.namespace, pod.Name, target)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/orders/1", nil)
	if err != nil {
		return Answer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("via Service orders (pod %s port %d): %w", pod.Name, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{Status: resp.StatusCode, Body: string(data), Pod: pod.Name}
	var b ordersBody
	if json.Unmarshal(data, &b) == nil {
		a.ServedBy, a.Build, a.Item = b.ServedBy, b.Build, b.Order["item"]
	}
	return a, nil
}

// target is where the orders Service sends a request: a ready pod and the
// Service's targetPort on it.
func (c *caller) target(ctx context.Context) (corev1.Pod, int, error) {
	svc, err := c.client.CoreV1().Services(c.namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return corev1.Pod{}, 0, err
	}
	var tp intstr.IntOrString
	for _, sp := range svc.Spec.Ports {
		if sp.Port == 8080 {
			tp = sp.TargetPort
		}
	}
	pod, err := c.readyPod(ctx, labels.SelectorFromSet(svc.Spec.Selector).String())
	if err != nil {
		return corev1.Pod{}, 0, err
	}
	target := tp.IntValue()
	if tp.Type == intstr.String {
		for _, ct := range pod.Spec.Containers {
			for _, cp := range ct.Ports {
				if cp.Name == tp.StrVal {
					target = int(cp.ContainerPort)
				}
			}
		}
	}
	return pod, target, nil
}

func (c *caller) readyPod(ctx context.Context, selector string) (corev1.Pod, error) {
	pods, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return corev1.Pod{}, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return p, nil
			}
		}
	}
	return corev1.Pod{}, fmt.Errorf("no ready pod for %s in %s", selector, c.namespace)
}

// runningPods counts the Running pods of selector that are not being deleted.
func runningPods(ctx context.Context, client kubernetes.Interface, namespace, selector string) (int, error) {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n, nil
}

// poll calls f every 200ms until it returns true, an error, or wait passes.
func poll(ctx context.Context, wait time.Duration, what string, f func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(wait)
	for {
		ok, err := f(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still not the case after %s", what, wait)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
