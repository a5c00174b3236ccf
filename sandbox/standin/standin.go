// Package standin runs the containers of pods as local processes, for a
// kwok cluster (package sandbox) where nothing else runs them. Each Running
// pod gets its containers started from the pod spec as the kubelet would
// (command, args, env with $(VAR) expansion, ConfigMap/Secret/downward API
// env and volumes), a pod-like network (a network namespace as root,
// remapped loopback ports otherwise) and a kwok PortForward, so Kubernetes
// port-forward through the apiserver reaches the processes. The runner
// marks a pod Ready once that port-forward works (ready.go), and in a
// network namespace it resolves Service names and translates Service ports
// to target ports as kube-proxy does (services.go). The test harness
// (test/cluster) and `kloop sandbox run` use it.
package standin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/kube/portforward"
)

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

// Options configure a Runner.
type Options struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Config reaches the same apiserver; the runner port-forwards with it
	// to check that a pod can be reached before marking it Ready.
	Config *rest.Config
	// Namespace whose pods get stand-ins; "" for every namespace.
	Namespace string
	Images    Images
	Network   Network
	// Dir holds volumes and logs.
	Dir string
	// BuildDir holds binaries built from Images; one already there is
	// reused, so runners of one run can share it. Dir/bin when empty.
	BuildDir string
	// RecordDir gets the "pids" and "net.list" files Reap reads to clean up
	// after a runner that died; Dir when empty.
	RecordDir string
	// DialCommand is argv that, with "127.0.0.1:PORT" appended, pipes
	// stdin/stdout to that address (see Dial). kwok runs it inside a pod's
	// network namespace for each port-forward connection.
	DialCommand []string
	// Logf reports stand-ins that cannot start (nil: discard).
	Logf func(format string, args ...any)
	// Race builds stand-ins from Go packages with -race (test harnesses set
	// it when they run under the race detector), so the kloop agent and the
	// samples are checked for data races. Whatever the builds, Stop fails
	// with the race reports found in stand-in logs.
	Race bool
	// Pull lists the registries whose images are pulled and run, as a
	// kubelet would, instead of looked up in Images.
	Pull Pull
}

// Runner runs stand-ins until Stop.
type Runner struct {
	opts   Options
	net    *network
	build  *builder
	puller *puller
	pf     *portforward.Dialer
	svc    *services

	mu   sync.Mutex
	pods map[types.UID]*podRun
	// lastHosts is the hosts file content last written per namespace.
	lastHosts map[string]string
	// services are the Services' lines of the hosts files.
	services []hostsEntry

	stop chan struct{}
	done chan struct{}
	// races holds the race reports found in the logs of stopped stand-ins
	// (under mu).
	races []error
}

// podRun is one pod's stand-ins.
type podRun struct {
	pod   *corev1.Pod
	net   *podNetwork
	procs map[string]*Process
	// err is why the pod's stand-ins could not start (shown by Wait).
	err error
	// probePort is the pod-side port of the readiness probe forward (0:
	// the pod has no ports, and is Ready once its stand-ins started).
	probePort int32
	// stopProbe ends the probe listener and markReady; set by startPod.
	stopProbe context.CancelFunc
	// ready is set once the runner marked the pod Ready.
	ready atomic.Bool
	// pull is set when an image pull failed: the pod is retried.
	pull *pullRetry
}

// Process is one container's stand-in.
type Process struct {
	Pod, Container string
	// ImageID is REPOSITORY@DIGEST of the pulled image it runs ("" for a
	// stand-in built locally).
	ImageID string
	// Argv and Env are what the process was started with.
	Argv []string
	Env  []string
	// Root is the KLOOP_ROOT the container's volumes are under.
	Root string
	// Netns is the network namespace ("" in loopback mode).
	Netns string
	// LogPath holds the process's stdout and stderr.
	LogPath string

	image  string
	ports  map[int32]string
	net    *podNetwork
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Addr is the host-reachable address of container port port: the pod's
// address in its namespace, or the remapped loopback port. A port bound to
// the pod's 127.0.0.1 only is not reachable there; use Dial or PortForward.
func (p *Process) Addr(port int32) string { return p.ports[port] }

// Dial connects to container port port at the pod's localhost, from
// inside the pod's network (so a port bound to 127.0.0.1 works too).
func (p *Process) Dial(port int32) (net.Conn, error) {
	return p.net.dial(port, 5*time.Second)
}

// Running reports whether the process is still alive.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// PID of the process (of `ip netns exec`, which execs into it).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Logs returns what the process printed so far.
func (p *Process) Logs() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

// Start runs stand-ins for the pods (existing and future) until Stop.
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if opts.Client == nil || opts.Dynamic == nil || opts.Config == nil {
		return nil, fmt.Errorf("stand-ins need a clientset, a dynamic client and a REST config")
	}
	if opts.Images == nil {
		opts.Images = Images{}
	}
	if opts.RecordDir == "" {
		opts.RecordDir = opts.Dir
	}
	if opts.BuildDir == "" {
		opts.BuildDir = filepath.Join(opts.Dir, "bin")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("stand-in directory: %w", err)
	}
	r := &Runner{
		opts: opts, net: newNetwork(opts.Network, opts.RecordDir, nextRunID()), build: &builder{dir: opts.BuildDir, race: opts.Race},
		puller: &puller{opts: opts.Pull, dir: filepath.Join(opts.BuildDir, "pulled")},
		pods:   map[types.UID]*podRun{}, lastHosts: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{}),
		pf: portforward.NewDialer(opts.Config),
	}
	r.svc = newServices(r)
	go r.loop()
	return r, nil
}

var runnerCount atomic.Int64

// nextRunID names a runner's namespaces and links: the pid (so orphans of
// a dead process are recognized) and a counter (runners of one process
// must not share names), in hex.
func nextRunID() string {
	return strconv.FormatInt(int64(os.Getpid()), 16) + "x" + strconv.FormatInt(runnerCount.Add(1), 16)
}

// Network is the networking in use.
func (s *Runner) Network() Network { return s.net.mode }

// Stop stops every stand-in and removes the pod networks. It returns the
// data races that stand-ins reported in their logs (of every pod this runner
// ran, including pods that went away before), nil when none did. Safe to call
// twice; a second call returns the same error.
func (s *Runner) Stop() error {
	select {
	case <-s.stop:
		<-s.done
	default:
		close(s.stop)
		<-s.done
	}
	// Before s.mu: proxied connections look pods up under it.
	s.svc.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, pr := range s.pods {
		s.stopPod(pr)
		delete(s.pods, uid)
	}
	s.net.close()
	return errors.Join(s.races...)
}

func (s *Runner) loop() {
	defer close(s.done)
	for {
		s.sync()
		select {
		case <-s.stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// sync starts stand-ins for new Running pods and stops those of pods that
// went away.
func (s *Runner) sync() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := s.opts.Client.CoreV1().Pods(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	// Service addresses first, so the hosts file a new pod starts with
	// already resolves every Service.
	svcs, svcErr := s.listServices(ctx)
	if svcErr == nil && s.net.mode == NetworkNamespace && s.hasNewPods(pods.Items) {
		if err := s.net.ensureBridge(ctx); err != nil {
			s.opts.Logf("stand-in network: %v", err)
		}
	}
	if svcErr == nil {
		s.svc.sync(ctx, svcs)
		s.updateHosts(svcs)
	}
	seen := map[types.UID]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
			continue
		}
		seen[pod.UID] = true
		s.mu.Lock()
		prev, known := s.pods[pod.UID]
		s.mu.Unlock()
		if known && !s.pullRetryDue(ctx, prev) {
			continue
		}
		pr := s.startPod(ctx, pod)
		var fail *pullFailure
		if errors.As(pr.err, &fail) {
			s.notePullFailure(ctx, prev, pr, fail)
		} else if pr.err != nil {
			s.opts.Logf("stand-ins of pod %s/%s: %v", pod.Namespace, pod.Name, pr.err)
		}
		s.mu.Lock()
		s.pods[pod.UID] = pr
		s.mu.Unlock()
	}
	s.mu.Lock()
	for uid, pr := range s.pods {
		if !seen[uid] {
			s.stopPod(pr)
			delete(s.pods, uid)
		}
	}
	s.mu.Unlock()
	if svcErr == nil {
		s.updateHosts(svcs)
	}
}

// hasNewPods reports whether pods has a Running pod without stand-ins yet.
func (s *Runner) hasNewPods(pods []corev1.Pod) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range pods {
		if _, known := s.pods[pods[i].UID]; !known && pods[i].Status.Phase == corev1.PodRunning && pods[i].DeletionTimestamp == nil {
			return true
		}
	}
	return false
}

func (s *Runner) listServices(ctx context.Context) ([]corev1.Service, error) {
	list, err := s.opts.Client.CoreV1().Services(s.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (s *Runner) startPod(ctx context.Context, pod *corev1.Pod) *podRun {
	pr := &podRun{pod: pod, procs: map[string]*Process{}}
	// Images first, as a kubelet pulls before it sets anything up.
	pulled, fail := s.pullImages(ctx, pod)
	if fail != nil {
		pr.err = fail
		return pr
	}
	var ports []int32
	seen := map[int32]bool{}
	add := func(p int32) {
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				add(p.ContainerPort)
			}
		}
		// Ports the program listens on without the pod declaring them.
		if img, ok := s.opts.Images.lookup(c.Image); ok {
			for _, p := range img.Ports {
				add(p)
			}
		}
	}
	pn, err := s.net.setupPod(ctx, ports)
	if err != nil {
		pr.err = err
		return pr
	}
	pr.net = pn
	// The namespace's names before the first process starts, as a pod's
	// DNS is there from its start: a lookup that ran ahead of the next
	// hosts update would go to the host's resolver and be cached as a miss.
	if hosts := pn.hostsPath(); hosts != "" {
		s.mu.Lock()
		var prs []*podRun
		for _, other := range s.pods {
			if other.net != nil && other.err == nil && other.pod.Namespace == pod.Namespace {
				prs = append(prs, other)
			}
		}
		sort.Slice(prs, func(i, j int) bool { return prs[i].pod.UID < prs[j].pod.UID })
		content := s.hostsContent(pod.Namespace, prs)
		s.mu.Unlock()
		writeInPlace(hosts, content+fmt.Sprintf("%s %s\n", pn.ip, pod.Name))
	}
	dir := filepath.Join(s.opts.Dir, "pods", pod.Namespace, pod.Name+"-"+string(pod.UID)[:8])
	src := newObjectSource(s.opts.Client, pod.Namespace)
	volumes, err := materializeVolumes(ctx, src, pod, filepath.Join(dir, "volumes"))
	if err != nil {
		pr.err = err
		return pr
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		p, err := s.startContainer(ctx, src, pod, c, pn, volumes, dir, pulled[c.Name])
		if err != nil {
			pr.err = fmt.Errorf("container %s: %w", c.Name, err)
			return pr
		}
		pr.procs[c.Name] = p
	}
	probeCtx, stopProbe := context.WithCancel(context.Background())
	pr.stopProbe = stopProbe
	var probe *net.TCPAddr
	if len(pn.ports) > 0 {
		pr.probePort = probePort(pn)
		if probe, err = startProbe(probeCtx, string(pod.UID)); err != nil {
			pr.err = err
			return pr
		}
	}
	if err := s.ensurePortForward(ctx, pod, pn, pr.probePort, probe); err != nil {
		pr.err = err
		return pr
	}
	for name, img := range pulled {
		s.reportImageID(ctx, pod, name, pr.procs[name].image, img.ImageID)
	}
	go s.markReady(probeCtx, pr)
	for _, c := range pod.Spec.Containers {
		p := pr.procs[c.Name]
		s.opts.Logf("stand-in %s/%s %s: pid %d at %s, log %s", pod.Namespace, pod.Name, c.Name, p.PID(), pn.ip, p.LogPath)
	}
	return pr
}

func (s *Runner) startContainer(ctx context.Context, src *objectSource, pod *corev1.Pod, c *corev1.Container, pn *podNetwork, volumes map[string]string, dir string, pulled *pulledImage) (*Process, error) {
	var img Image
	var bin string
	if pulled != nil {
		bin = pulled.Binary
	} else {
		var ok bool
		if img, ok = s.opts.Images.lookup(c.Image); !ok {
			return nil, fmt.Errorf("no stand-in for image %q: add it to the Images table", c.Image)
		}
		var err error
		if bin, err = s.build.binary(ctx, img); err != nil {
			return nil, err
		}
	}
	vars, err := resolveEnv(ctx, src, pod, c)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root-"+c.Name)
	if err := mountRoot(root, c, volumes); err != nil {
		return nil, err
	}
	values := map[string]string{}
	for _, v := range vars {
		values[v.Name] = v.Value
	}
	lookup := func(name string) (string, bool) { v, ok := values[name]; return v, ok }
	// command[0] names a path inside the image; the local binary replaces it.
	var args []string
	if len(c.Command) > 1 {
		for _, a := range c.Command[1:] {
			args = append(args, expand(a, lookup))
		}
	}
	for _, a := range c.Args {
		args = append(args, expand(a, lookup))
	}
	if pulled != nil && len(c.Command) == 0 && len(c.Args) == 0 {
		args = slices.Clone(pulled.Cmd) // the image's default command
	}
	rewrite := portRewriter(pn)
	env := []string{"KLOOP_ROOT=" + root, "HOSTNAME=" + pod.Name}
	for _, v := range vars {
		env = append(env, v.Name+"="+rewrite(v.Value))
	}
	for i := range args {
		args[i] = rewrite(args[i])
	}
	p := &Process{
		Pod: pod.Name, Container: c.Name, image: c.Image, Argv: append([]string{bin}, args...), Env: env, Root: root,
		Netns: pn.netns, LogPath: filepath.Join(dir, c.Name+".log"), ports: map[int32]string{}, net: pn, exited: make(chan struct{}),
	}
	if pulled != nil {
		p.ImageID = pulled.ImageID
	}
	for _, port := range c.Ports {
		p.ports[port.ContainerPort] = pn.addr(port.ContainerPort)
	}
	for _, port := range img.Ports {
		p.ports[port] = pn.addr(port)
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := pn.command(bin, args)
	// Only what the pod spec says, plus PATH so the program can run tools.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Dir = root
	if c.WorkingDir != "" {
		cmd.Dir = filepath.Join(root, c.WorkingDir)
		_ = os.MkdirAll(cmd.Dir, 0o700)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	appendLine(filepath.Join(s.opts.RecordDir, "pids"), strconv.Itoa(cmd.Process.Pid))
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// portRewriter rewrites ":PORT", "0.0.0.0:PORT", "127.0.0.1:PORT" and
// "localhost:PORT" of the pod's ports to their remapped loopback address in
// loopback mode; in a network namespace nothing needs rewriting.
func portRewriter(pn *podNetwork) func(string) string {
	if pn.netns != "" || len(pn.ports) == 0 {
		return func(s string) string { return s }
	}
	var alts []string
	for p := range pn.ports {
		alts = append(alts, strconv.Itoa(int(p)))
	}
	re := regexp.MustCompile(`(^|[^0-9A-Za-z.\-])(?:0\.0\.0\.0|127\.0\.0\.1|localhost)?:(` + strings.Join(alts, "|") + `)\b`)
	return func(s string) string {
		return re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatch(m)
			port, _ := strconv.Atoi(sub[2])
			return sub[1] + "127.0.0.1:" + strconv.Itoa(int(pn.ports[int32(port)]))
		})
	}
}

// ensurePortForward creates the kwok PortForward that sends Kubernetes
// port-forwards of the pod to its stand-ins. It is owned by the pod, so it
// goes when the pod does.
func (s *Runner) ensurePortForward(ctx context.Context, pod *corev1.Pod, pn *podNetwork, probePort int32, probe *net.TCPAddr) error {
	if len(pn.ports) == 0 {
		return nil
	}
	// kwok dials a target from its own process, on the host.
	forwards := []any{map[string]any{
		"ports":  []any{int64(probePort)},
		"target": map[string]any{"address": probe.IP.String(), "port": int64(probe.Port)},
	}}
	ports := make([]int, 0, len(pn.ports))
	for p := range pn.ports {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	ipPath, err := exec.LookPath("ip")
	if pn.netns != "" && (err != nil || len(s.opts.DialCommand) == 0) {
		return fmt.Errorf("port-forward into %s needs ip(8) and a DialCommand (ip: %v)", pn.netns, err)
	}
	for _, p := range ports {
		fw := map[string]any{"ports": []any{int64(p)}}
		if len(s.opts.DialCommand) == 0 {
			// Loopback mode without a DialCommand: kwok's own forward,
			// which never ends a connection the pod closed until the
			// client writes again.
			fw["target"] = map[string]any{"address": pn.ip, "port": int64(pn.ports[int32(p)])}
			forwards = append(forwards, fw)
			continue
		}
		var argv []any
		addr := pn.addr(int32(p))
		if pn.netns != "" {
			// Like the kubelet: dial the pod's own localhost, from inside.
			argv = []any{ipPath, "netns", "exec", pn.netns}
			addr = fmt.Sprintf("127.0.0.1:%d", p)
		}
		for _, a := range s.opts.DialCommand {
			argv = append(argv, a)
		}
		fw["command"] = append(argv, addr)
		forwards = append(forwards, fw)
	}
	pf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "PortForward",
		"metadata": map[string]any{
			"name":      pod.Name,
			"namespace": pod.Namespace,
			"ownerReferences": []any{map[string]any{
				"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID),
			}},
		},
		"spec": map[string]any{"forwards": forwards},
	}}
	ri := s.opts.Dynamic.Resource(portForwardGVR).Namespace(pod.Namespace)
	_, err = ri.Create(ctx, pf, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := ri.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("get PortForward %s: %w", pod.Name, gerr)
		}
		pf.SetResourceVersion(old.GetResourceVersion())
		_, err = ri.Update(ctx, pf, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("create kwok PortForward for pod %s: %w", pod.Name, err)
	}
	return nil
}

// stopPod stops the pod's processes (SIGTERM to each process group, then
// SIGKILL), keeps the race reports in their logs for Stop, and removes its
// network namespace. Callers hold s.mu.
func (s *Runner) stopPod(pr *podRun) {
	if pr.stopProbe != nil {
		pr.stopProbe()
	}
	var wg sync.WaitGroup
	for _, p := range pr.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(5 * time.Second)
		}()
	}
	wg.Wait()
	// Sorted, so the reports of one pod come in container order.
	names := make([]string, 0, len(pr.procs))
	for name := range pr.procs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := pr.procs[name]
		what := fmt.Sprintf("stand-in %s/%s container %s (log %s)", pr.pod.Namespace, p.Pod, p.Container, p.LogPath)
		if err := racecheck.Check(what, p.Logs()); err != nil {
			s.races = append(s.races, err)
		}
	}
	s.net.teardownPod(pr.net)
}

func (p *Process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	// Children that ignored SIGTERM while the leader exited.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// updateHosts writes each pod namespace's hosts file, the stand-ins' cluster
// DNS: every Service of the runner's namespaces resolves to its address
// (package services.go: a listener that translates the Service's ports to
// its endpoints' target ports, as kube-proxy does), as NAME within its own
// namespace and as NAME.NAMESPACE[.svc[.cluster.local]] from everywhere; a
// headless Service resolves to one of its pods; each pod's name to its
// address.
func (s *Runner) updateHosts(svcs []corev1.Service) {
	if s.net.mode != NetworkNamespace {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byNS := map[string][]*podRun{}
	for _, pr := range s.pods {
		if pr.net != nil && pr.err == nil {
			byNS[pr.pod.Namespace] = append(byNS[pr.pod.Namespace], pr)
		}
	}
	for _, prs := range byNS {
		sort.Slice(prs, func(i, j int) bool { return prs[i].pod.UID < prs[j].pod.UID })
	}
	var entries []hostsEntry
	for i := range svcs {
		svc := &svcs[i]
		ip := s.svc.addr(svc.Namespace, svc.Name)
		if ip == "" && svc.Spec.ClusterIP == corev1.ClusterIPNone && len(svc.Spec.Selector) > 0 {
			sel := labels.SelectorFromSet(svc.Spec.Selector)
			for _, pr := range byNS[svc.Namespace] {
				if sel.Matches(labels.Set(pr.pod.Labels)) {
					ip = pr.net.ip
					break
				}
			}
		}
		if ip != "" {
			entries = append(entries, hostsEntry{svc.Namespace, svc.Name, ip})
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].ns != entries[j].ns {
			return entries[i].ns < entries[j].ns
		}
		return entries[i].name < entries[j].name
	})
	s.services = entries
	for ns, prs := range byNS {
		content := s.hostsContent(ns, prs)
		if content == s.lastHosts[ns] {
			continue
		}
		for _, pr := range prs {
			// Written in place: `ip netns exec` bind-mounted this inode over
			// /etc/hosts of running processes; a rename would not reach them.
			writeInPlace(pr.net.hostsPath(), content)
		}
		s.lastHosts[ns] = content
	}
}

// hostsEntry is a Service's line in the hosts files.
type hostsEntry struct{ ns, name, ip string }

// hostsContent is the hosts file of the pods of namespace ns, prs. Callers
// hold s.mu.
func (s *Runner) hostsContent(ns string, prs []*podRun) string {
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n")
	for _, e := range s.services {
		b.WriteString(e.ip)
		if e.ns == ns {
			b.WriteString(" " + e.name)
		}
		fmt.Fprintf(&b, " %s.%s %s.%s.svc %s.%s.svc.cluster.local\n", e.name, e.ns, e.name, e.ns, e.name, e.ns)
	}
	for _, pr := range prs {
		fmt.Fprintf(&b, "%s %s\n", pr.net.ip, pr.pod.Name)
	}
	return b.String()
}

func writeInPlace(path, content string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(content)
}

// Wait waits until the stand-in of container in pod (of namespace) runs
// and every one of its ports accepts connections, and returns it. It
// fails early when the stand-in could not start or exited, with the
// reason and the end of its log.
func (s *Runner) Wait(ctx context.Context, namespace, pod, container string) (*Process, error) {
	var p *Process
	why := "the pod is not Running (or not seen yet)"
	for {
		s.mu.Lock()
		var pr *podRun
		for _, r := range s.pods {
			if r.pod.Name == pod && r.pod.Namespace == namespace {
				pr = r
			}
		}
		s.mu.Unlock()
		if pr != nil {
			if pr.err != nil {
				return nil, pr.err
			}
			if p = pr.procs[container]; p == nil {
				return nil, fmt.Errorf("pod %s has no container %q", pod, container)
			}
			if !p.Running() {
				return nil, fmt.Errorf("stand-in exited (%v); log:\n%s", p.err, lastLines(p.Logs(), 20))
			}
			ready := true
			for port := range p.ports {
				conn, err := p.Dial(port)
				if err != nil {
					why, ready = fmt.Sprintf("port %d does not accept yet: %v", port, err), false
					break
				}
				conn.Close()
			}
			if ready {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			logs := ""
			if p != nil {
				logs = "; log:\n" + lastLines(p.Logs(), 20)
			}
			return nil, fmt.Errorf("stand-in %s/%s/%s not ready: %s%s", namespace, pod, container, why, logs)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Processes lists the running stand-ins.
func (s *Runner) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Process
	for _, pr := range s.pods {
		for _, p := range pr.procs {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod+out[i].Container < out[j].Pod+out[j].Container })
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
