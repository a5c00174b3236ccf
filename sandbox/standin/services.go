package standin

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// services is the sandbox's kube-proxy, in its old userspace form: each
// Service (other than headless and ExternalName ones) gets an address of
// the run's /24 on the host's end of the bridge, which the pods' hosts
// files resolve its name to, and a listener there on each of its TCP
// ports. A connection to SERVICE:PORT goes to a ready endpoint of the
// Service's EndpointSlices (kube-controller-manager keeps them, from the
// pods' Ready condition), at the port the slice names for that Service
// port: the targetPort, a number or a container port's name resolved per
// pod. Without this a Service name would reach a pod only where port ==
// targetPort, which no cluster requires.
//
// Differences from a cluster's proxy, none of which the samples rely on:
// the pod sees the connection come from the bridge's address (.1), not from
// the calling pod; a Service without ready endpoints resets the connection
// instead of refusing it; only TCP; no session affinity. Loopback mode
// (not root) has no pod network, so no Service names at all.
type services struct {
	r *Runner

	mu      sync.Mutex
	started bool
	// synced is closed once slices holds a first full list.
	synced  chan struct{}
	slices  map[types.NamespacedName][]*discoveryv1.EndpointSlice // by Service
	stopInf chan struct{}
	addrs   map[types.NamespacedName]*serviceAddr
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// serviceAddr is one Service's address and its port listeners.
type serviceAddr struct {
	ip        string
	listeners map[int32]*serviceListener
}

type serviceListener struct {
	ln net.Listener
	// portName is the Service port's name, which EndpointSlice ports carry.
	portName string
}

func newServices(r *Runner) *services {
	return &services{
		r: r, addrs: map[types.NamespacedName]*serviceAddr{}, conns: map[net.Conn]struct{}{},
		stopInf: make(chan struct{}), synced: make(chan struct{}),
	}
}

// addr is the address the hosts files give the Service; "" when it has
// none (headless, ExternalName, or no pod network yet).
func (s *services) addr(namespace, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.addrs[types.NamespacedName{Namespace: namespace, Name: name}]; a != nil {
		return a.ip
	}
	return ""
}

// sync gives every proxied Service of svcs an address and listeners for
// its current ports, and takes them from Services that went away.
func (s *services) sync(ctx context.Context, svcs []corev1.Service) {
	if s.r.net.mode != NetworkNamespace {
		return
	}
	if err := s.startInformer(ctx); err != nil {
		s.r.opts.Logf("Service proxy: %v", err)
		return
	}
	want := map[types.NamespacedName]*corev1.Service{}
	for i := range svcs {
		svc := &svcs[i]
		if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		want[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = svc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for key, a := range s.addrs {
		if want[key] == nil {
			for _, l := range a.listeners {
				l.ln.Close()
			}
			delete(s.addrs, key)
			s.r.net.removeServiceAddr(a.ip)
		}
	}
	for key, svc := range want {
		a := s.addrs[key]
		if a == nil {
			ip, err := s.r.net.addServiceAddr(ctx)
			if err != nil {
				s.r.opts.Logf("Service %s: %v", key, err)
			}
			if ip == "" {
				continue
			}
			a = &serviceAddr{ip: ip, listeners: map[int32]*serviceListener{}}
			s.addrs[key] = a
		}
		ports := map[int32]string{}
		for _, p := range svc.Spec.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				ports[p.Port] = p.Name
			}
		}
		for port, l := range a.listeners {
			if name, ok := ports[port]; !ok || name != l.portName {
				l.ln.Close()
				delete(a.listeners, port)
			}
		}
		for port, name := range ports {
			if a.listeners[port] != nil {
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(a.ip, strconv.Itoa(int(port))))
			if err != nil {
				s.r.opts.Logf("Service %s port %d: %v", key, port, err)
				continue
			}
			a.listeners[port] = &serviceListener{ln: ln, portName: name}
			s.wg.Add(1)
			go s.serve(ln, key, name)
		}
	}
}

// startInformer starts watching EndpointSlices (once) and waits for the
// first list. A small list-and-watch of its own: client-go's informers
// would bring in more modules than this needs.
func (s *services) startInformer(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.started = true
		s.wg.Add(1)
		go s.watchSlices()
	}
	s.mu.Unlock()
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("EndpointSlices not listed: %w", ctx.Err())
	}
}

// watchSlices keeps s.slices current until close: a list, then a watch
// from its resourceVersion, listing again whenever the watch ends.
func (s *services) watchSlices() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stopInf
		cancel()
	}()
	api := s.r.opts.Client.DiscoveryV1().EndpointSlices(s.r.opts.Namespace)
	first := true
	for ctx.Err() == nil {
		list, err := api.List(ctx, metav1.ListOptions{})
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		byName := map[types.NamespacedName]*discoveryv1.EndpointSlice{}
		for i := range list.Items {
			sl := &list.Items[i]
			byName[types.NamespacedName{Namespace: sl.Namespace, Name: sl.Name}] = sl
		}
		s.setSlices(byName)
		if first {
			close(s.synced)
			first = false
		}
		w, err := api.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
		if err != nil {
			continue
		}
		for ev := range w.ResultChan() {
			sl, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				break // an error event (e.g. the resourceVersion expired): list again
			}
			key := types.NamespacedName{Namespace: sl.Namespace, Name: sl.Name}
			switch ev.Type {
			case watch.Added, watch.Modified:
				byName[key] = sl
			case watch.Deleted:
				delete(byName, key)
			default:
				continue
			}
			s.setSlices(byName)
		}
		w.Stop()
	}
}

// setSlices indexes the slices by their Service.
func (s *services) setSlices(byName map[types.NamespacedName]*discoveryv1.EndpointSlice) {
	bySvc := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, sl := range byName {
		if svc := sl.Labels[discoveryv1.LabelServiceName]; svc != "" {
			key := types.NamespacedName{Namespace: sl.Namespace, Name: svc}
			bySvc[key] = append(bySvc[key], sl)
		}
	}
	s.mu.Lock()
	s.slices = bySvc
	s.mu.Unlock()
}

// serve accepts connections to one Service port until its listener closes.
func (s *services) serve(ln net.Listener, svc types.NamespacedName, portName string) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.proxy(c, svc, portName)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// proxy connects c to an endpoint of the Service, trying the next one when
// an endpoint does not answer, and copies both ways until both sides end.
func (s *services) proxy(c net.Conn, svc types.NamespacedName, portName string) {
	defer c.Close()
	backends := s.backends(svc, portName)
	var up net.Conn
	for _, b := range backends {
		var err error
		if up, err = net.DialTimeout("tcp", b, 3*time.Second); err == nil {
			break
		}
	}
	if up == nil {
		// Reset rather than a clean close: the caller sees a failure, not
		// an empty answer.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		up.Close()
		return
	}
	s.conns[up] = struct{}{}
	s.mu.Unlock()
	defer func() {
		up.Close()
		s.mu.Lock()
		delete(s.conns, up)
		s.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// backends are the host-reachable addresses of the Service port's
// endpoints, in random order: the ready ones, or, when none is ready, the
// ones still serving while they terminate (as kube-proxy does).
func (s *services) backends(svc types.NamespacedName, portName string) []string {
	s.mu.Lock()
	// Slices are replaced, never changed, so they are safe to read unlocked.
	slices := s.slices[svc]
	s.mu.Unlock()
	var ready, serving []string
	for _, sl := range slices {
		port := int32(0)
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			ip := s.r.podAddr(ep.TargetRef.UID)
			if ip == "" {
				continue
			}
			addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
			switch {
			case ep.Conditions.Ready == nil || *ep.Conditions.Ready:
				ready = append(ready, addr)
			case ep.Conditions.Serving != nil && *ep.Conditions.Serving:
				serving = append(serving, addr)
			}
		}
	}
	if len(ready) == 0 {
		ready = serving
	}
	rand.Shuffle(len(ready), func(i, j int) { ready[i], ready[j] = ready[j], ready[i] })
	return ready
}

// close stops every listener and proxied connection.
func (s *services) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stopInf)
	for key, a := range s.addrs {
		for _, l := range a.listeners {
			l.ln.Close()
		}
		s.r.net.removeServiceAddr(a.ip)
		delete(s.addrs, key)
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// podAddr is the address of the pod's network, "" when the pod has no
// running stand-ins here.
func (s *Runner) podAddr(uid types.UID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr := s.pods[uid]; pr != nil && pr.net != nil && pr.err == nil {
		return pr.net.ip
	}
	return ""
}
