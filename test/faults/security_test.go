package faults_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/orders"
)

// sampleSecret is the value of the orders sample's Secret (orders.yaml).
const sampleSecret = "sample-token-not-a-real-secret"

// TestSecurity runs the whole loop on the orders sample (intercept, serve
// cluster traffic, relaunch on save, env, a claim, leave) and checks, along
// the way, what a user trusts kloop with: private files, a tunnel only the
// token's holder can use, secrets kept out of every log, and no listener
// off loopback.
func TestSecurity(t *testing.T) {
	f := newFixture(t)
	var outputs []string // every CLI output but `kloop env`'s
	run := func(args ...string) orders.Result {
		t.Helper()
		r := f.MustKloop(t, args...)
		outputs = append(outputs, fmt.Sprintf("kloop %s:\n%s\n%s", strings.Join(args, " "), r.Stdout, r.Stderr))
		return r
	}
	run("intercept", "orders", "--detach")
	f.servedBy(t, "laptop-v1 through the intercept", onLaptop("laptop-v1"))
	first := f.Status(t).Process.PID
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the relaunch after the save", func() bool {
		st, ok := f.tryStatus()
		return ok && st.Process != nil && st.Process.PID != first && st.Process.State == "running"
	})
	f.servedBy(t, "laptop-v2 after the relaunch", onLaptop("laptop-v2"))
	run("status")
	run("status", "-o", "json")
	// The program's output is there for kloop logs (and in the outputs the
	// secret grep below reads).
	if r := run("logs"); !strings.Contains(r.Stdout+r.Stderr, "orders listening") {
		t.Errorf("kloop logs printed %q; want the program's output", r.Stdout+r.Stderr)
	}

	// `kloop env` is the one place the secret belongs.
	var vars map[string]string
	envJSON := f.MustKloop(t, "env", "orders", "--format", "json")
	if err := json.Unmarshal([]byte(envJSON.Stdout), &vars); err != nil {
		t.Fatalf("kloop env: %v\n%s", err, envJSON.Stdout)
	}
	if vars["API_TOKEN"] != sampleSecret {
		t.Fatalf("kloop env API_TOKEN = %q, want the Secret's value", vars["API_TOKEN"])
	}
	for _, format := range []string{"dotenv", "shell"} {
		if r := f.MustKloop(t, "env", "orders", "--format", format); !strings.Contains(r.Stdout, sampleSecret) {
			t.Errorf("kloop env --format %s lacks API_TOKEN's value", format)
		}
	}
	secrets := map[string]string{"the orders Secret's api-token": sampleSecret, "the tunnel token": f.token(t)}
	if u, err := url.Parse(vars["HTTP_PROXY"]); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets["the outbound proxy password"] = pw
		}
	}

	t.Run("socket and state private", func(t *testing.T) {
		checkMode(t, "the daemon socket's directory", filepath.Dir(f.Daemon.Socket), fs.ModeDir|0o700)
		checkMode(t, "the daemon socket", f.Daemon.Socket, fs.ModeSocket|0o600)
		checkMode(t, "state.json", filepath.Join(f.Daemon.State, "state.json"), 0o600)
		// The daemon log carries the program's output.
		checkMode(t, "daemon.log", filepath.Join(f.Daemon.State, "daemon.log"), 0o600)
	})

	t.Run("volumes private", func(t *testing.T) {
		root := vars["KLOOP_ROOT"]
		if root == "" {
			t.Fatalf("kloop env has no KLOOP_ROOT")
		}
		if !strings.HasPrefix(root, f.Daemon.State+string(filepath.Separator)) {
			t.Errorf("KLOOP_ROOT %s is not under the state directory %s", root, f.Daemon.State)
		}
		catalog := filepath.Join(root, "etc", "orders", "catalog.json")
		if data, err := os.ReadFile(catalog); err != nil || !strings.Contains(string(data), "keyboard") {
			t.Errorf("the catalog volume is not materialized at %s: %v", catalog, err)
		}
		files := 0
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Stat(path) // through the symlinks of an atomic-writer layout
			if err != nil {
				return err
			}
			switch {
			case info.IsDir():
				if info.Mode().Perm() != 0o700 {
					t.Errorf("directory %s has mode %v, want 0700", path, info.Mode().Perm())
				}
			default:
				files++
				if p := info.Mode().Perm(); p != 0o600 && p != 0o700 {
					t.Errorf("file %s has mode %v, want 0600 (0700 when executable)", path, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files == 0 {
			t.Errorf("no files under KLOOP_ROOT %s", root)
		}
	})

	t.Run("claim kubeconfig private", func(t *testing.T) {
		pool := newPool(t, 1)
		ws := t.TempDir()
		if err := os.WriteFile(filepath.Join(ws, ".kloop.yaml"), []byte("kubeconfig: "+f.Env.Kubeconfig+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := f.KloopIn(t, ws, "claim", "--pool", pool)
		outputs = append(outputs, "kloop claim:\n"+r.Stdout+r.Stderr)
		if r.Code != 0 {
			t.Fatalf("kloop claim: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		defer func() {
			r := f.KloopIn(t, ws, "release")
			outputs = append(outputs, "kloop release:\n"+r.Stdout+r.Stderr)
			if r.Code != 0 {
				t.Errorf("kloop release: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
			}
		}()
		r = f.KloopIn(t, ws, "status", "-o", "json")
		var st session.Status
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Claim == nil || st.Claim.Kubeconfig == "" {
			t.Fatalf("status after claim has no kubeconfig: %v\n%s%s", err, r.Stdout, r.Stderr)
		}
		checkMode(t, "the claim's kubeconfig", st.Claim.Kubeconfig, 0o600)
	})

	t.Run("agent refuses a forged token", func(t *testing.T) {
		rec := f.record(t)
		agentPort, _ := rec.AgentPort(8080)
		pods := f.interceptedPods(t, rec.ID, 2)
		real := secrets["the tunnel token"]
		forgeries := []string{"", "not-the-token", strings.Repeat("0", 64), flipLast(real)}
		for _, pod := range pods {
			for _, forged := range forgeries {
				conn, err := f.PF.Dial(context.Background(), f.Env.Namespace, pod, rec.ControlPort)
				if err != nil {
					t.Fatalf("port-forward to %s's control port %d: %v", pod, rec.ControlPort, err)
				}
				c, err := tunnel.Dial(context.Background(), conn, forged)
				if err == nil {
					c.Close()
					t.Fatalf("the agent of %s accepted the forged token %q", pod, forged)
				}
				conn.Close()
				// The agent proves it holds the token before the client
				// sends anything; a forger cannot check that proof.
				if !errors.Is(err, tunnel.ErrAgentUnproven) || !strings.Contains(err.Error(), "nothing that grants access was sent") {
					t.Errorf("forged token %q at %s: %v, want the client to stop at the agent's proof", forged, pod, err)
				}
			}
			// The real intercept is unaffected.
			code, a, body, err := f.tryGetVia(pod, agentPort)
			if err != nil || code != 200 || a.Build != "laptop-v2" {
				t.Errorf("via %s after the forged attempts: %d %s %v, want laptop-v2", pod, code, body, err)
			}
			if log := f.agentOf(t, pod).Logs(); !strings.Contains(log, "refused tunnel client") {
				t.Errorf("the agent of %s did not log the refusals:\n%s", pod, log)
			}
		}
		if st := f.Status(t); len(st.Intercepts) != 1 {
			t.Errorf("status after the forged attempts = %+v, want the intercept", st)
		}
	})

	t.Run("daemon listens on loopback only", func(t *testing.T) {
		pids := f.Daemon.DaemonPIDs()
		if len(pids) != 1 {
			t.Fatalf("daemons: %v, want one", pids)
		}
		daemon := pids[0]
		procs := append([]int{daemon}, descendants(daemon)...)
		program := f.Status(t).Process.PID
		listeners := map[int][]string{}
		for _, pid := range procs {
			inodes := socketInodes(pid)
			for _, file := range []string{"tcp", "tcp6"} {
				for _, l := range tcpListeners(t, fmt.Sprintf("/proc/%d/net/%s", pid, file)) {
					if !inodes[l.inode] {
						continue
					}
					listeners[pid] = append(listeners[pid], l.addr.String())
					if !l.addr.Addr().IsLoopback() {
						t.Errorf("pid %d (%s) listens on %s, off loopback", pid, strings.Join(procArgs(pid), " "), l.addr)
					}
				}
			}
		}
		t.Logf("TCP listeners of the daemon %d and its programs: %v", daemon, listeners)
		if len(listeners[daemon]) == 0 {
			t.Errorf("found no TCP listener of the daemon (the outbound proxy); the check would see none off loopback either")
		}
		if len(listeners[program]) == 0 {
			t.Errorf("found no TCP listener of the program %d; the check would see none off loopback either", program)
		}
		unix := unixSockets(t, daemon)
		if !unix[f.Daemon.Socket] {
			t.Errorf("the daemon does not hold its socket %s; unix sockets: %v", f.Daemon.Socket, unix)
		}
	})

	// Leave, then read every log of the run.
	run("leave", "--all")
	processes := f.StandIns.Processes()
	logs := map[string]string{"the daemon log": f.daemonLog()}
	for i, o := range outputs {
		logs[fmt.Sprintf("CLI output %d", i)] = o
	}
	dirs := map[string]bool{}
	for _, p := range processes {
		dirs[filepath.Dir(filepath.Dir(p.LogPath))] = true
	}
	for dir := range dirs {
		matches, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
		for _, m := range matches {
			data, _ := os.ReadFile(m)
			logs["stand-in log "+m] = string(data)
		}
	}
	agentLogs := 0
	for name := range logs {
		if strings.HasSuffix(name, "kloop-agent.log") {
			agentLogs++
		}
	}
	if agentLogs < 2 {
		t.Errorf("found %d agent logs among the stand-in logs; the grep would miss them", agentLogs)
	}
	// The program's output stays in memory (kloop logs), out of the daemon's
	// log on disk.
	if strings.Contains(logs["the daemon log"], "orders listening") {
		t.Errorf("the daemon log holds the program's output; it belongs in memory only (kloop logs)")
	}
	for name, text := range logs {
		for what, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s contains %s: …%s…", name, what, text[max(0, i-200):min(len(text), i+len(secret)+50)])
			}
		}
	}
}

func checkMode(t *testing.T, what, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if got := info.Mode() & (fs.ModeType | fs.ModePerm); got != want {
		t.Errorf("%s %s has mode %v, want %v", what, path, got, want)
	}
}

// socketInodes are the inodes of pid's open sockets.
func socketInodes(pid int) map[string]bool {
	out := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return out
}

type tcpListener struct {
	addr  netip.AddrPort
	inode string
}

// tcpListeners parses the LISTEN sockets of a /proc/PID/net/tcp{,6} file.
func tcpListeners(t *testing.T, path string) []tcpListener {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer file.Close()
	var out []tcpListener
	sc := bufio.NewScanner(file)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		addr, err := parseProcAddr(f[1])
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, tcpListener{addr: addr, inode: f[9]})
	}
	return out
}

// parseProcAddr decodes "0100007F:1F90" (IPv4) or the 32-hex-digit IPv6
// form: the address in host-order 32-bit words, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// unixSockets are the paths of the unix sockets pid holds.
func unixSockets(t *testing.T, pid int) map[string]bool {
	t.Helper()
	inodes := socketInodes(pid)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 8 && inodes[f[6]] {
			out[f[7]] = true
		}
	}
	return out
}

var deployOnce sync.Once

// newPool creates a namespace pool of n slots, as a cluster admin does
// (deploy/claimer-rbac.yaml, then `kloop pool create`); it goes when t ends.
func newPool(t testing.TB, n int) string {
	t.Helper()
	cfg := cluster.Shared(t).Config
	var err error
	deployOnce.Do(func() {
		var data []byte
		if data, err = os.ReadFile("../../deploy/claimer-rbac.yaml"); err == nil {
			err = sandbox.Apply(context.Background(), cfg, claim.DefaultNamespace, data)
		}
	})
	if err != nil {
		t.Fatalf("apply deploy/claimer-rbac.yaml: %v", err)
	}
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	name := fmt.Sprintf("f%x", h.Sum32())
	admin, err := claim.NewPoolAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateNamespacePool(context.Background(), name, n, claim.CreateOptions{}); err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
		defer cancel()
		if err := admin.Delete(ctx, name, true, nil); err != nil {
			t.Errorf("delete pool %s: %v", name, err)
		}
	})
	return name
}

// flipLast is s with its last character changed: a near miss.
func flipLast(s string) string {
	if strings.HasSuffix(s, "a") {
		return s[:len(s)-1] + "b"
	}
	return s[:len(s)-1] + "a"
}
