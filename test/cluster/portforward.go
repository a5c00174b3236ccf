package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// PortForward forwards a local loopback port to port of pod through the
// apiserver, as `kubectl port-forward` does, and returns "127.0.0.1:PORT".
// The forward stops when t ends. Like kubectl's, it ends at the first
// failed connection; right after a stand-in starts, kwok may not have
// loaded its PortForward yet, so prefer HTTPGet, which retries.
func (e *Env) PortForward(t testing.TB, pod string, port int) string {
	t.Helper()
	addr, stop, err := PortForward(e.Config, e.Namespace, pod, port)
	if err != nil {
		t.Fatalf("port-forward to %s/%s:%d: %v", e.Namespace, pod, port, err)
	}
	t.Cleanup(stop)
	return addr
}

// PortForward is the form of Env.PortForward for code without a testing.TB.
func PortForward(cfg *rest.Config, namespace, pod string, port int) (addr string, stop func(), err error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("spdy round tripper: %w", err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return "", nil, fmt.Errorf("parse apiserver URL %q: %w", cfg.Host, err)
	}
	u.Path = fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", namespace, pod)
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stopCh := make(chan struct{})
	readyCh := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stopCh, readyCh, io.Discard, io.Discard)
	if err != nil {
		return "", nil, err
	}
	errCh := make(chan error, 1)
	go func() { errCh <- fw.ForwardPorts() }()
	select {
	case <-readyCh:
	case err := <-errCh:
		return "", nil, fmt.Errorf("port-forward: %w", err)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		close(stopCh)
		return "", nil, fmt.Errorf("port-forward local port: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			close(stopCh)
			<-errCh
		}
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), stop, nil
}

// HTTPGet GETs path from port of pod through a Kubernetes port-forward and
// returns the status and body. It retries (with a new port-forward) until
// a response arrives or WaitTimeout passes, then fails t.
func (e *Env) HTTPGet(t testing.TB, pod string, port int, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var status int
	var body string
	var lastErr error
	err := poll(context.Background(), WaitTimeout, func(ctx context.Context) (bool, error) {
		addr, stop, err := PortForward(e.Config, e.Namespace, pod, port)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer stop()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			lastErr = err
			return false, nil
		}
		status, body = resp.StatusCode, string(data)
		return true, nil
	})
	if err != nil {
		t.Fatalf("GET %s on %s/%s:%d via port-forward: %v (last error: %v)%s", path, e.Namespace, pod, port, err, lastErr, e.Cluster.health())
	}
	return status, body
}
