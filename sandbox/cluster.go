package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kloop/kloop/sandbox/standin"
)

// DefaultName is the cluster `kloop sandbox up` starts without --name.
const DefaultName = "kloop"

// ErrNoCluster is returned by Down and Status for a cluster that does not exist.
var ErrNoCluster = errors.New("no such sandbox cluster")

// Options select and shape a sandbox cluster.
type Options struct {
	// Name of the cluster, a DNS label of at most 40 characters; DefaultName when empty.
	Name string
	// Nodes is the number of fake kwok nodes; 1 when 0.
	Nodes int
	// APIServerPort pins the apiserver's port on 127.0.0.1; 0 picks a free one.
	APIServerPort int
	// StateDir holds clusters; default $XDG_STATE_HOME/kloop/sandbox
	// (XDG_STATE_HOME defaults to ~/.local/state).
	StateDir string
	// BinDir holds the binaries; default: EnsureBinaries (which may build).
	BinDir string
	// Owner is a process whose death makes the cluster a leftover that the
	// next Up removes (the test harness passes its own pid). 0: none; the
	// cluster lives until Down.
	Owner int
	// Timeout bounds starting the cluster (not building); default 3 minutes.
	Timeout  time.Duration
	Progress ProgressFunc
}

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := validateName(o.Name); err != nil {
		return o, err
	}
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Nodes < 0 || o.Nodes > 100 {
		return o, fmt.Errorf("node count %d is out of range: use 1 to 100", o.Nodes)
	}
	if o.APIServerPort < 0 || o.APIServerPort > 65535 {
		return o, fmt.Errorf("apiserver port %d is out of range: use 1 to 65535, or 0 for any free port", o.APIServerPort)
	}
	if o.StateDir == "" {
		dir, err := DefaultStateDir()
		if err != nil {
			return o, err
		}
		o.StateDir = dir
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	return o, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validateName(name string) error {
	if len(name) > 40 || !nameRE.MatchString(name) {
		return fmt.Errorf("invalid sandbox cluster name %q: use lowercase letters, digits and '-', at most 40 characters, starting and ending with a letter or digit", name)
	}
	return nil
}

// DefaultStateDir is $XDG_STATE_HOME/kloop/sandbox, XDG_STATE_HOME
// defaulting to ~/.local/state.
func DefaultStateDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the sandbox state directory: no XDG_STATE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "kloop", "sandbox"), nil
}

// Cluster is a running sandbox cluster.
type Cluster struct {
	Name string `json:"name"`
	// Kubeconfig is a self-contained kubeconfig file (0600) whose current
	// context is the cluster.
	Kubeconfig string `json:"kubeconfig"`
	// Context is the kubeconfig's context name.
	Context string `json:"context"`
	// Server is the apiserver URL (https://127.0.0.1:PORT).
	Server string `json:"server"`
	// Workdir is kwokctl's directory of the cluster (logs/, pids/, pki/).
	Workdir string `json:"workdir"`
	// Reused is true when Up found the cluster already running.
	Reused bool `json:"reused,omitempty"`
}

// RESTConfig loads the cluster's kubeconfig.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load sandbox kubeconfig %s: %w", c.Kubeconfig, err)
	}
	return cfg, nil
}

// layout is where one cluster's files are.
type layout struct {
	name       string
	stateDir   string
	kwokDir    string // KWOK_WORKDIR
	workdir    string // kwokctl's cluster directory
	ownDir     string // our files: kubeconfig, owner.json, kwokctl.log
	kubeconfig string
}

func newLayout(stateDir, name string) layout {
	l := layout{name: name, stateDir: stateDir, kwokDir: filepath.Join(stateDir, "kwok")}
	l.workdir = filepath.Join(l.kwokDir, "clusters", name)
	l.ownDir = filepath.Join(stateDir, "clusters", name)
	l.kubeconfig = filepath.Join(l.ownDir, "kubeconfig")
	return l
}

func (l layout) contextName() string { return "kloop-sandbox-" + l.name }

func (l layout) exists() bool {
	_, err1 := os.Stat(l.workdir)
	_, err2 := os.Stat(l.ownDir)
	return err1 == nil || err2 == nil
}

// Up starts the named cluster, or returns it when it is already running
// and healthy. A leftover of a killed run (dead components, or a dead
// owner) is removed first. Each step is bounded by opts.Timeout.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		opts.BinDir, err = EnsureBinaries(ctx, opts.Progress)
		if err != nil {
			return nil, fmt.Errorf("sandbox binaries: %w", err)
		}
	} else if err := checkBinDir(opts.BinDir); err != nil {
		return nil, err
	}
	removeOrphans(ctx, opts)

	// Checking for an existing cluster and starting one happen under a
	// machine-wide lock: a second `up` of the same name waits and then
	// reuses the first's cluster, and kwokctl, which picks ports by
	// scanning down from 32767 in every process, never runs twice at once.
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), fmt.Sprintf("kloop-sandbox-start-%d.lock", os.Getuid())), "another sandbox start", opts.Progress)
	if err != nil {
		return nil, err
	}
	defer unlock()

	l := newLayout(opts.StateDir, opts.Name)
	if l.exists() {
		st := inspect(ctx, l)
		if st.State == StateRunning && st.problem == "" {
			opts.Progress.say(Progress{Message: fmt.Sprintf("cluster %q is already running", opts.Name)})
			c := st.cluster(l)
			c.Reused = true
			return c, nil
		}
		reason := st.problem
		if reason == "" {
			reason = "state " + st.State
		}
		opts.Progress.say(Progress{Message: fmt.Sprintf("removing leftover cluster %q (%s)", opts.Name, reason)})
		if err := down(ctx, l, opts.BinDir); err != nil {
			return nil, fmt.Errorf("remove leftover cluster %q: %w", opts.Name, err)
		}
	}
	if opts.APIServerPort != 0 {
		if err := portFree(opts.APIServerPort); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		c, err := create(ctx, l, opts)
		if err == nil {
			return c, nil
		}
		// Never leave half a cluster behind.
		cleanupCtx, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		derr := down(cleanupCtx, l, opts.BinDir)
		cancelCleanup()
		if derr != nil {
			return nil, fmt.Errorf("%w (and cleaning up failed: %v)", err, derr)
		}
		// Another program may take a chosen port between choice and bind;
		// new ports fix that, a pinned apiserver port would not.
		if attempt == 1 && opts.APIServerPort == 0 && strings.Contains(err.Error(), "address already in use") && ctx.Err() == nil {
			opts.Progress.say(Progress{Message: "a port was taken while starting; retrying with new ports"})
			continue
		}
		return nil, err
	}
}

func create(ctx context.Context, l layout, opts Options) (*Cluster, error) {
	if err := os.MkdirAll(l.ownDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state: %w", err)
	}
	if err := writeOwner(l, opts.Owner); err != nil {
		return nil, err
	}
	bin := opts.BinDir
	configPath, err := writeKwokctlConfig(l, opts.APIServerPort)
	if err != nil {
		return nil, err
	}
	args := []string{
		"create", "cluster", "--name", l.name, "--runtime", "binary",
		"--config", configPath,
		"--kube-apiserver-binary", filepath.Join(bin, "kube-apiserver"),
		"--kube-controller-manager-binary", filepath.Join(bin, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(bin, "kube-scheduler"),
		"--etcd-binary", filepath.Join(bin, "etcd"),
		"--kwok-controller-binary", filepath.Join(bin, "kwok"),
		// Empty: never merge into the user's ~/.kube/config; we write our own.
		"--kubeconfig", "",
		"--enable-crds", "PortForward,ClusterPortForward",
		"--wait", opts.Timeout.String(),
	}
	stop := opts.Progress.tick(Progress{Step: 1, Steps: 3, Message: fmt.Sprintf("starting control plane %q", l.name)}, 5*time.Second)
	err = runKwokctl(ctx, l, bin, args...)
	stop(err == nil)
	if err != nil {
		return nil, fmt.Errorf("start sandbox cluster %q: %w%s", l.name, err, componentLogHints(l))
	}
	if err := writeKubeconfig(l); err != nil {
		return nil, err
	}
	c := &Cluster{Name: l.name, Kubeconfig: l.kubeconfig, Context: l.contextName(), Workdir: l.workdir}
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	c.Server = cfg.Host
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for sandbox %q: %w", l.name, err)
	}

	stop = opts.Progress.tick(Progress{Step: 2, Steps: 3, Message: "waiting for the apiserver"}, 5*time.Second)
	err = pollUntil(ctx, func() (bool, error) {
		if dead := deadComponents(l); len(dead) > 0 {
			return false, fmt.Errorf("%s died%s", strings.Join(dead, ", "), componentLogHints(l))
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
	stop(err == nil)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q apiserver never became ready: %w", l.name, err)
	}

	stop = opts.Progress.tick(Progress{Step: 3, Steps: 3, Message: fmt.Sprintf("adding %d node(s)", opts.Nodes)}, 5*time.Second)
	err = runKwokctl(ctx, l, bin, "scale", "node", "--name", l.name, "--replicas", strconv.Itoa(opts.Nodes))
	if err == nil {
		err = waitNodesReady(ctx, l, client, opts.Nodes)
	}
	stop(err == nil)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q nodes: %w", l.name, err)
	}
	return c, nil
}

func waitNodesReady(ctx context.Context, l layout, client kubernetes.Interface, want int) error {
	var ready int
	err := pollUntil(ctx, func() (bool, error) {
		if dead := deadComponents(l); len(dead) > 0 {
			return false, fmt.Errorf("%s died%s", strings.Join(dead, ", "), componentLogHints(l))
		}
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready = 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= want, nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d nodes ready: %w", ready, want, err)
	}
	return nil
}

// pollUntil calls f every 200ms until it returns true, an error, or ctx ends.
func pollUntil(ctx context.Context, f func() (bool, error)) error {
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runKwokctl runs kwokctl with its state under l.kwokDir. Its output goes
// to a file, not a pipe: the components it forks must not hold our pipe
// open (that would hang Wait).
func runKwokctl(ctx context.Context, l layout, bin string, args ...string) error {
	if err := os.MkdirAll(l.ownDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(l.ownDir, "kwokctl.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	start, _ := logFile.Seek(0, 2)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "kwokctl"), args...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+l.kwokDir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		if int(start) <= len(out) {
			out = out[start:]
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("kwokctl %s: %v\n%s", strings.Join(args[:2], " "), err, lastLines(string(out), 15))
	}
	return nil
}

// writeKwokctlConfig writes the kwokctl configuration of the cluster:
// every component bound to 127.0.0.1 (kwok's default is 0.0.0.0) on ports
// chosen here, the apiserver's on apiPort when it is not 0, and the kwok
// Stages of stages.go.
func writeKwokctlConfig(l layout, apiPort int) (string, error) {
	names := []string{"etcdPort", "etcdPeerPort", "kubeApiserverPort", "kubeControllerManagerPort", "kubeSchedulerPort", "kwokControllerPort"}
	ports := map[string]int{}
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for _, name := range names {
		if name == "kubeApiserverPort" && apiPort != 0 {
			ports[name] = apiPort
			continue
		}
		// Held open until all are chosen, so the six are distinct.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("choose a port for %s: %w", name, err)
		}
		held = append(held, ln)
		ports[name] = ln.Addr().(*net.TCPAddr).Port
	}
	var b strings.Builder
	b.WriteString("apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokctlConfiguration\noptions:\n  bindAddress: 127.0.0.1\n")
	for _, name := range names {
		fmt.Fprintf(&b, "  %s: %d\n", name, ports[name])
	}
	stages, err := stagesYAML()
	if err != nil {
		return "", err
	}
	b.WriteString(stages)
	path := filepath.Join(l.ownDir, "kwokctl.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write kwokctl config: %w", err)
	}
	return path, nil
}

// writeKubeconfig turns kwokctl's kubeconfig (which points at files in
// its pki directory) into one self-contained 0600 file.
func writeKubeconfig(l layout) error {
	src := filepath.Join(l.workdir, "kubeconfig.yaml")
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return fmt.Errorf("read kwokctl kubeconfig: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return fmt.Errorf("embed sandbox credentials: %w", err)
	}
	cur, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return fmt.Errorf("kwokctl kubeconfig %s has no current context", src)
	}
	name := l.contextName()
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cfg.Clusters[cur.Cluster]
	out.AuthInfos[name] = cfg.AuthInfos[cur.AuthInfo]
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	out.CurrentContext = name
	if out.Clusters[name] == nil || out.AuthInfos[name] == nil {
		return fmt.Errorf("kwokctl kubeconfig %s lacks the cluster or user of its context", src)
	}
	data, err := clientcmd.Write(*out)
	if err != nil {
		return fmt.Errorf("encode sandbox kubeconfig: %w", err)
	}
	tmp := l.kubeconfig + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write sandbox kubeconfig: %w", err)
	}
	if err := os.Rename(tmp, l.kubeconfig); err != nil {
		return fmt.Errorf("write sandbox kubeconfig: %w", err)
	}
	return nil
}

// Down stops the named cluster, kills any of its processes still alive
// and removes its files. ErrNoCluster when there is nothing to remove.
func Down(ctx context.Context, opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	l := newLayout(opts.StateDir, opts.Name)
	if !l.exists() {
		return fmt.Errorf("%w %q (in %s)", ErrNoCluster, opts.Name, opts.StateDir)
	}
	bin := opts.BinDir
	if bin == "" {
		if c, err := DefaultCache(); err == nil {
			bin = c.BinDir()
		}
	}
	return down(ctx, l, bin)
}

func down(ctx context.Context, l layout, bin string) error {
	// kwokctl delete stops the components one by one with long graceful
	// shutdowns (about 15 s); a sandbox keeps no data worth a graceful stop,
	// so all components get SIGTERM at once and SIGKILL after a short grace.
	// bin is unused but kept so a future kwokctl cleanup step has it.
	_ = bin
	pids := componentPIDs(l)
	type result struct {
		name string
		pid  int
		err  error
	}
	results := make(chan result, len(pids))
	for name, pid := range pids {
		go func() { results <- result{name, pid, killAndWait(ctx, pid, time.Second)} }()
	}
	var alive []string
	for range pids {
		r := <-results
		if r.err != nil {
			alive = append(alive, fmt.Sprintf("%s (pid %d): %v", r.name, r.pid, r.err))
		}
	}
	if len(alive) > 0 {
		sort.Strings(alive)
		return fmt.Errorf("stop sandbox %q: still running: %s", l.name, strings.Join(alive, "; "))
	}
	// Stand-ins of `kloop sandbox run` that outlived it (killed).
	standin.Reap(filepath.Join(l.ownDir, "standins"))
	if err := os.RemoveAll(l.workdir); err != nil {
		return fmt.Errorf("remove sandbox %q: %w", l.name, err)
	}
	if err := os.RemoveAll(l.ownDir); err != nil {
		return fmt.Errorf("remove sandbox %q: %w", l.name, err)
	}
	return nil
}

// killAndWait sends SIGTERM, then SIGKILL after grace, and waits (bounded)
// until the process is gone.
func killAndWait(ctx context.Context, pid int, grace time.Duration) error {
	if !processAlive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	killed := false
	for processAlive(pid) {
		if !killed && time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(grace)
		} else if killed && time.Now().After(deadline) {
			return errors.New("does not die even after SIGKILL")
		}
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the parenthesized command name.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// componentPIDs reads kwokctl's pid files: component name -> pid.
func componentPIDs(l layout) map[string]int {
	pids := map[string]int{}
	entries, err := os.ReadDir(filepath.Join(l.workdir, "pids"))
	if err != nil {
		return pids
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(l.workdir, "pids", e.Name()))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			pids[strings.TrimSuffix(e.Name(), ".pid")] = pid
		}
	}
	return pids
}

// deadComponents names the components whose process is gone.
func deadComponents(l layout) []string {
	var dead []string
	for name, pid := range componentPIDs(l) {
		if !processAlive(pid) {
			dead = append(dead, fmt.Sprintf("%s (pid %d)", name, pid))
		}
	}
	sort.Strings(dead)
	return dead
}

// componentLogHints quotes the lines of the component logs that most
// likely explain a failure (a taken port, a crash).
func componentLogHints(l layout) string {
	logs, _ := filepath.Glob(filepath.Join(l.workdir, "logs", "*.log"))
	var b strings.Builder
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var hits []string
		for _, line := range strings.Split(string(data), "\n") {
			low := strings.ToLower(line)
			if strings.Contains(low, "address already in use") || strings.Contains(low, "panic") ||
				strings.Contains(low, "fatal") || strings.Contains(low, "error:") {
				hits = append(hits, line)
			}
		}
		if len(hits) > 5 {
			hits = hits[len(hits)-5:]
		}
		if len(hits) > 0 {
			fmt.Fprintf(&b, "\n%s:\n  %s", path, strings.Join(hits, "\n  "))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "; component logs say:" + b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// portFree fails with an actionable message when port is taken on loopback.
func portFree(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d on 127.0.0.1 is already in use (%v): stop whatever listens there, or pick another port (or 0 for any free port)", port, err)
	}
	return ln.Close()
}

func checkBinDir(dir string) error {
	var missing []string
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b.name)); err != nil {
			missing = append(missing, b.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("sandbox binaries missing in %s: %s; run `kloop sandbox up` without a bin directory to build them", dir, strings.Join(missing, ", "))
	}
	return nil
}

// owner records the process a cluster belongs to; its start time guards
// against a reused pid.
type owner struct {
	PID       int       `json:"pid,omitempty"`
	StartTick string    `json:"startTick,omitempty"`
	Created   time.Time `json:"created"`
}

func writeOwner(l layout, pid int) error {
	o := owner{PID: pid, Created: time.Now().UTC()}
	if pid > 0 {
		o.StartTick = processStartTick(pid)
	}
	data, _ := json.Marshal(o)
	if err := os.WriteFile(filepath.Join(l.ownDir, "owner.json"), data, 0o600); err != nil {
		return fmt.Errorf("record sandbox owner: %w", err)
	}
	return nil
}

func readOwner(l layout) (owner, bool) {
	var o owner
	data, err := os.ReadFile(filepath.Join(l.ownDir, "owner.json"))
	if err != nil {
		return o, false
	}
	return o, json.Unmarshal(data, &o) == nil
}

// ownerGone reports whether the cluster's owner process has exited.
func (o owner) gone() bool {
	if o.PID == 0 {
		return false
	}
	return !processAlive(o.PID) || processStartTick(o.PID) != o.StartTick
}

func processStartTick(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	// Field 22 (starttime); fields after the name start at field 3.
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// removeOrphans deletes every cluster whose owner process died (a test
// binary killed before its teardown ran). Failures are only reported:
// they must not stop a new cluster from starting.
func removeOrphans(ctx context.Context, opts Options) {
	entries, err := os.ReadDir(filepath.Join(opts.StateDir, "clusters"))
	if err != nil {
		return
	}
	for _, e := range entries {
		l := newLayout(opts.StateDir, e.Name())
		o, ok := readOwner(l)
		if !ok || !o.gone() {
			continue
		}
		opts.Progress.say(Progress{Message: fmt.Sprintf("removing cluster %q left by a run that died (pid %d)", e.Name(), o.PID)})
		if err := down(ctx, l, opts.BinDir); err != nil {
			opts.Progress.say(Progress{Message: fmt.Sprintf("could not remove cluster %q: %v", e.Name(), err)})
		}
	}
}
