package standin

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Network selects how stand-ins of one pod share a network.
type Network string

const (
	// NetworkAuto is NetworkNamespace as root, NetworkLoopback otherwise.
	NetworkAuto Network = ""
	// NetworkNamespace gives each pod a network namespace on a bridge of
	// this run, with a /24 from 10.213.0.0/16. Needs root and ip(8).
	NetworkNamespace Network = "netns"
	// NetworkLoopback runs stand-ins on the host with each container port
	// remapped to a free 127.0.0.1 port.
	NetworkLoopback Network = "loopback"
)

func (n Network) resolve() Network {
	if n != NetworkAuto {
		return n
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("ip"); err == nil {
			return NetworkNamespace
		}
	}
	return NetworkLoopback
}

// Pipe copies stdin to a TCP connection to addr and the connection to
// stdout. It is the DialCommand's body: kwok runs it inside a pod's network
// namespace per port-forward connection, so port-forward reaches the pod's
// 127.0.0.1 as the kubelet's does, and kwok ends the port-forward stream
// only when Pipe exits.
//
// When the pod's side ends first, Pipe gives the client a second to end
// its own and then exits, as containerd's port-forward does: a server that
// closes an idle keep-alive connection must be seen closing it, or the
// client's next request waits on a connection nobody reads. When the
// client's side ends first, the pod keeps a minute to answer, so
// half-closing clients still get their response.
func Pipe(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	podDone := make(chan struct{})
	clientDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(os.Stdout, conn)
		close(podDone)
	}()
	go func() {
		_, _ = io.Copy(conn, os.Stdin)
		_ = conn.(*net.TCPConn).CloseWrite()
		close(clientDone)
	}()
	select {
	case <-podDone:
		select {
		case <-clientDone:
		case <-time.After(time.Second):
		}
	case <-clientDone:
		select {
		case <-podDone:
		case <-time.After(time.Minute):
		}
	}
	return conn.Close()
}

// podNetwork is where one pod's stand-ins run.
type podNetwork struct {
	netns string // "" in loopback mode
	// ip is the address the pod's ports are reachable at from the host.
	ip string
	// ports maps each container port to the port on ip.
	ports map[int32]int32
	index int
}

func (p *podNetwork) addr(port int32) string {
	return net.JoinHostPort(p.ip, strconv.Itoa(int(p.ports[port])))
}

// dial connects to the pod's own localhost:port, from inside its
// network namespace (like the kubelet's port-forward), so ports bound to
// 127.0.0.1 in the pod are reachable too.
func (p *podNetwork) dial(port int32, timeout time.Duration) (net.Conn, error) {
	if p.netns == "" {
		return net.DialTimeout("tcp", p.addr(port), timeout)
	}
	target, err := os.Open(filepath.Join("/run/netns", p.netns))
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", p.netns, err)
	}
	defer target.Close()
	// A socket belongs to the namespace of the thread that creates it.
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", p.netns, err)
	}
	conn, dialErr := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), timeout)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime then discards it rather
		// than run other goroutines in the pod's namespace.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave %s: %w", p.netns, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// command runs bin inside the pod's network.
func (p *podNetwork) command(bin string, args []string) *exec.Cmd {
	if p.netns == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", p.netns, bin}, args...)...)
}

// hostsPath is the file `ip netns exec` bind-mounts over /etc/hosts.
func (p *podNetwork) hostsPath() string {
	if p.netns == "" {
		return ""
	}
	return filepath.Join("/etc/netns", p.netns, "hosts")
}

// network hands out pod networks for one test binary (one run).
type network struct {
	mode   Network
	runID  string // the pid (and runner number) in hex: names of our netns and links
	runDir string

	mu       sync.Mutex
	bridge   string
	prefix   string // "10.213.K."
	nextHost int
	free     []int
	// Service addresses count down from 254; freed ones are reused.
	nextSvc int
	freeSvc []int
}

const podSubnetBase = "10.213."

// The run's /24: .1 is the host's bridge, pods get .2 to lastPodHost, and
// Services (package services.go) the addresses above it.
const lastPodHost = 199

func newNetwork(mode Network, runDir string, runID string) *network {
	return &network{mode: mode.resolve(), runID: runID, runDir: runDir, nextHost: 2, nextSvc: 254}
}

func (n *network) setupPod(ctx context.Context, ports []int32) (*podNetwork, error) {
	if n.mode == NetworkLoopback {
		pn := &podNetwork{ip: "127.0.0.1", ports: map[int32]int32{}}
		for _, p := range ports {
			free, err := freeLoopbackPort()
			if err != nil {
				return nil, err
			}
			pn.ports[p] = free
		}
		return pn, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bridge == "" {
		if err := n.createBridge(ctx); err != nil {
			return nil, err
		}
	}
	// Fresh addresses first: a reused one is still in the other pods'
	// neighbour caches with the old pod's MAC, and their replies to the new
	// pod get lost for seconds (a replacement pod calling a Service timed
	// out that way). Freed addresses are reused, oldest first, only once
	// the /24 ran out.
	var idx int
	switch {
	case n.nextHost <= lastPodHost:
		idx = n.nextHost
		n.nextHost++
	case len(n.free) > 0:
		idx, n.free = n.free[0], n.free[1:]
	default:
		return nil, fmt.Errorf("more than %d stand-in pods at once: the run's /24 is full", lastPodHost-1)
	}
	pn := &podNetwork{netns: fmt.Sprintf("kloop-%s-%d", n.runID, idx), ip: n.prefix + strconv.Itoa(idx), ports: map[int32]int32{}, index: idx}
	for _, p := range ports {
		pn.ports[p] = p
	}
	host, peer := fmt.Sprintf("k%sh%d", n.runID, idx), fmt.Sprintf("k%sp%d", n.runID, idx)
	n.record("netns", pn.netns)
	steps := [][]string{
		{"netns", "add", pn.netns},
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", pn.netns},
		{"link", "set", host, "master", n.bridge},
		{"link", "set", host, "up"},
		{"-n", pn.netns, "link", "set", "lo", "up"},
		{"-n", pn.netns, "link", "set", peer, "name", "eth0"},
		{"-n", pn.netns, "addr", "add", pn.ip + "/24", "dev", "eth0"},
		{"-n", pn.netns, "link", "set", "eth0", "up"},
		{"-n", pn.netns, "route", "add", "default", "via", n.prefix + "1"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			n.deleteNetns(pn.netns)
			return nil, fmt.Errorf("pod network: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(pn.hostsPath()), 0o755); err != nil {
		n.deleteNetns(pn.netns)
		return nil, fmt.Errorf("pod network hosts file: %w", err)
	}
	if err := os.WriteFile(pn.hostsPath(), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		n.deleteNetns(pn.netns)
		return nil, fmt.Errorf("pod network hosts file: %w", err)
	}
	return pn, nil
}

// ensureBridge creates the run's bridge unless it exists.
func (n *network) ensureBridge(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bridge != "" {
		return nil
	}
	return n.createBridge(ctx)
}

// addServiceAddr adds an address of the run's /24 to the host's end of the
// bridge, for a Service; "" while there is no bridge (no pod to call it).
func (n *network) addServiceAddr(ctx context.Context) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bridge == "" {
		return "", nil
	}
	var idx int
	switch {
	case len(n.freeSvc) > 0:
		idx, n.freeSvc = n.freeSvc[0], n.freeSvc[1:]
	case n.nextSvc > lastPodHost:
		idx = n.nextSvc
		n.nextSvc--
	default:
		return "", fmt.Errorf("more than %d Services at once: the run's /24 is full", 254-lastPodHost)
	}
	ip := n.prefix + strconv.Itoa(idx)
	// A /32: the pods reach it on the bridge, their own /24.
	if err := ipCmd(ctx, "addr", "add", ip+"/32", "dev", n.bridge); err != nil {
		n.freeSvc = append(n.freeSvc, idx)
		return "", fmt.Errorf("add a Service address to the bridge: %w", err)
	}
	return ip, nil
}

// removeServiceAddr takes a Service's address off the bridge.
func (n *network) removeServiceAddr(ip string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bridge == "" || !strings.HasPrefix(ip, n.prefix) {
		return
	}
	idx, err := strconv.Atoi(strings.TrimPrefix(ip, n.prefix))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ipCmd(ctx, "addr", "del", ip+"/32", "dev", n.bridge)
	n.freeSvc = append(n.freeSvc, idx)
}

func (n *network) teardownPod(pn *podNetwork) {
	if pn == nil || pn.netns == "" {
		return
	}
	n.deleteNetns(pn.netns)
	n.mu.Lock()
	n.free = append(n.free, pn.index)
	n.mu.Unlock()
}

func (n *network) deleteNetns(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Deleting the namespace deletes its veth end and so the host end too.
	_ = ipCmd(ctx, "netns", "delete", name)
	_ = os.RemoveAll(filepath.Join("/etc/netns", name))
}

// createBridge picks a free 10.213.K.0/24 (no host address in it) under a
// machine-wide lock, so concurrent test binaries get different subnets.
func (n *network) createBridge(ctx context.Context) error {
	unlock, err := lockPath(ctx, "/run/kloop-sandbox-net.lock")
	if err != nil {
		return err
	}
	defer unlock()
	used := map[string]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil && ip4[0] == 10 && ip4[1] == 213 {
				used[fmt.Sprintf("%s%d.", podSubnetBase, ip4[2])] = true
			}
		}
	}
	for k := 0; k < 256; k++ {
		prefix := fmt.Sprintf("%s%d.", podSubnetBase, k)
		if used[prefix] {
			continue
		}
		bridge := "k" + n.runID + "br"
		n.record("link", bridge)
		for _, s := range [][]string{
			{"link", "add", bridge, "type", "bridge"},
			{"addr", "add", prefix + "1/24", "dev", bridge},
			{"link", "set", bridge, "up"},
		} {
			if err := ipCmd(ctx, s...); err != nil {
				_ = ipCmd(ctx, "link", "delete", bridge)
				return fmt.Errorf("create stand-in bridge: %w", err)
			}
		}
		n.bridge, n.prefix = bridge, prefix
		return nil
	}
	return fmt.Errorf("no free /24 in %s0.0/16 for stand-in pods", podSubnetBase)
}

func (n *network) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bridge != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ipCmd(ctx, "link", "delete", n.bridge)
		n.bridge = ""
	}
}

// record notes a namespace or link for the reaper, before it exists.
func (n *network) record(kind, name string) {
	appendLine(filepath.Join(n.runDir, "net.list"), kind+" "+name)
}

func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func freeLoopbackPort() (int32, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port), nil
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func lockPath(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Reap kills the stand-in process groups and deletes the network
// namespaces and links recorded in recordDir (Options.RecordDir) by a
// runner that may have died. It is safe to run twice.
func Reap(runDir string) {
	if data, err := os.ReadFile(filepath.Join(runDir, "pids")); err == nil {
		for _, line := range strings.Fields(string(data)) {
			if pgid, err := strconv.Atoi(line); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(runDir, "net.list"))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, line := range strings.Split(string(data), "\n") {
		kind, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch kind {
		case "netns":
			if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
				_ = ipCmd(ctx, "netns", "delete", name)
			}
			_ = os.RemoveAll(filepath.Join("/etc/netns", name))
		case "link":
			if _, err := net.InterfaceByName(name); err == nil {
				_ = ipCmd(ctx, "link", "delete", name)
			}
		}
	}
}

var ourNetns = regexp.MustCompile(`^kloop-([0-9a-f]+)x[0-9a-f]+-\d+$`)
var ourBridge = regexp.MustCompile(`^k([0-9a-f]+)x[0-9a-f]+br$`)

// CleanupOrphans removes network namespaces and bridges of runners whose
// process is gone without a Reap.
func CleanupOrphans() {
	if os.Geteuid() != 0 {
		return
	}
	dead := func(hexPID string) bool {
		pid, err := strconv.ParseInt(hexPID, 16, 32)
		return err == nil && syscall.Kill(int(pid), 0) != nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if m := ourNetns.FindStringSubmatch(e.Name()); m != nil && dead(m[1]) {
				_ = ipCmd(ctx, "netns", "delete", e.Name())
				_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if m := ourBridge.FindStringSubmatch(i.Name); m != nil && dead(m[1]) {
				_ = ipCmd(ctx, "link", "delete", i.Name)
			}
		}
	}
}
