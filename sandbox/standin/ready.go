package standin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// A pod is Ready when a client can use it: the sandbox's kwok stages leave
// a new pod Running but not Ready (sandbox/stages/pod-running.yaml), and
// the runner marks it Ready once every stand-in of the pod runs, each of
// its ports accepts a connection inside the pod's network, and a
// port-forward through the apiserver reaches the pod. kwok loads the pod's
// PortForward from a watch some time after it was created; until then a
// port-forward to the pod fails with "no forward found for port N". That
// window is what made clients that picked a Ready pod fail.
//
// The port-forward check goes to a probe port added to the pod's
// PortForward, whose target is a listener of the runner that answers with
// the pod's UID: a PortForward left by an earlier pod of the same name
// (StatefulSet pods keep their names) cannot pass for the new one's.

// probeGreeting is what a pod's probe listener writes, followed by the
// pod's UID and a newline.
const probeGreeting = "kloop-standin-probe "

// probePort picks the pod-side port of the probe forward: the highest port
// the pod does not use.
func probePort(pn *podNetwork) int32 {
	for p := int32(65535); p > 0; p-- {
		if _, used := pn.ports[p]; !used {
			return p
		}
	}
	return 0
}

// startProbe listens on the host's loopback and answers every connection
// with the pod's probe greeting until ctx ends.
func startProbe(ctx context.Context, uid string) (*net.TCPAddr, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("probe listener: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte(probeGreeting + uid + "\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr), nil
}

// markReady waits until the pod's stand-ins can serve (see above) and then
// sets the pod's Ready condition, as a kubelet's readiness report would. It
// gives up when ctx ends (the pod went away, the runner stops) or a
// stand-in exits (the pod then stays not Ready, as with a crashed
// container).
func (s *Runner) markReady(ctx context.Context, pr *podRun) {
	defer pr.stopProbe()
	why := ""
	for {
		var err error
		if why, err = s.notReadyYet(ctx, pr); err != nil {
			s.opts.Logf("pod %s/%s stays not Ready: %v", pr.pod.Namespace, pr.pod.Name, err)
			return
		}
		if why == "" {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error { return s.setReady(ctx, pr.pod) })
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logf("mark pod %s/%s Ready: %v", pr.pod.Namespace, pr.pod.Name, err)
		}
		return
	}
	pr.ready.Store(true)
}

// notReadyYet says why the pod cannot serve yet ("" once it can); an error
// means it never will.
func (s *Runner) notReadyYet(ctx context.Context, pr *podRun) (string, error) {
	for name, p := range pr.procs {
		if !p.Running() {
			return "", fmt.Errorf("the stand-in of container %s exited (%v); log %s:\n%s", name, p.err, p.LogPath, lastLines(p.Logs(), 10))
		}
	}
	for port := range pr.net.ports {
		conn, err := pr.net.dial(port, time.Second)
		if err != nil {
			return fmt.Sprintf("port %d does not accept yet", port), nil
		}
		conn.Close()
	}
	if pr.probePort == 0 {
		return "", nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := s.pf.Dial(dctx, pr.pod.Namespace, pr.pod.Name, int(pr.probePort))
	if err != nil {
		return fmt.Sprintf("port-forward: %v", err), nil
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Sprintf("port-forward to the probe port: %v", err), nil
	}
	if got := strings.TrimSpace(strings.TrimPrefix(line, probeGreeting)); got != string(pr.pod.UID) {
		return fmt.Sprintf("port-forward reaches another pod's forward (%q)", got), nil
	}
	return "", nil
}

// setReady sets the Ready and ContainersReady conditions of pod and marks
// its containers ready.
func (s *Runner) setReady(ctx context.Context, pod *corev1.Pod) error {
	pods := s.opts.Client.CoreV1().Pods(pod.Namespace)
	cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.UID != pod.UID {
		return fmt.Errorf("pod %s was replaced", pod.Name)
	}
	now := metav1.Now()
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		cond := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
		found := false
		for i := range cur.Status.Conditions {
			if cur.Status.Conditions[i].Type == t {
				cur.Status.Conditions[i] = cond
				found = true
			}
		}
		if !found {
			cur.Status.Conditions = append(cur.Status.Conditions, cond)
		}
	}
	for i := range cur.Status.ContainerStatuses {
		cur.Status.ContainerStatuses[i].Ready = true
	}
	_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}
