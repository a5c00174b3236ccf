package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// foreignListenerEnv makes the test binary a listener instead of running
// tests; TestClientRefusesForeignListener runs it as another user.
const foreignListenerEnv = "KLOOP_TEST_FOREIGN_LISTENER"

func TestMain(m *testing.M) {
	if path := os.Getenv(foreignListenerEnv); path != "" {
		foreignListener(path)
		return
	}
	os.Exit(m.Run())
}

// foreignListener listens on path and reports, for each connection, how
// many bytes the client sent before hanging up. It exits when its stdin
// closes.
func foreignListener(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	_ = os.Chmod(path, 0o777)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("listening as uid %d\n", os.Getuid())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Println("accept:", err)
			os.Exit(1)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, c)
		c.Close()
		fmt.Printf("received %d bytes (%v)\n", n, err)
	}
}

// tempDir returns a private directory under /tmp: unix socket paths are
// limited to about 100 bytes, too few for t.TempDir under long test names.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "kloop-server-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runDaemon runs a daemon in this process until the test ends and waits
// until it listens.
func runDaemon(t *testing.T, opts DaemonOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon on %s: %v", opts.Paths.Socket, err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("daemon on %s not ready after 10s", opts.Paths.Socket)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon on %s: %v", opts.Paths.Socket, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("daemon on %s did not stop", opts.Paths.Socket)
		}
	})
}

// stillServes fails the test unless the daemon on paths answers a CLI.
func stillServes(t *testing.T, paths Paths) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, ClientOptions{Dial: DialOptions{Paths: paths, NoStart: true}, Workspace: t.TempDir()})
	if err != nil {
		t.Fatalf("the daemon on %s no longer serves: %v", paths.Socket, err)
	}
	_ = c.Close(ctx)
}

// TestOneDaemonPerStateDir: state.json and crash recovery belong to the
// state directory, so a second daemon on it is refused even through another
// socket (another XDG_RUNTIME_DIR), and says which daemon is in the way.
func TestOneDaemonPerStateDir(t *testing.T) {
	tests := []struct {
		name string
		// second returns the second daemon's paths, given the first's.
		second  func(t *testing.T, first Paths) Paths
		wantErr func(first Paths) []string // nil: the second daemon runs
	}{
		{
			name: "another socket, same state directory",
			second: func(t *testing.T, first Paths) Paths {
				return Paths{Socket: filepath.Join(tempDir(t), "run", "daemon.sock"), State: first.State}
			},
			wantErr: func(first Paths) []string {
				return []string{"already running on the state directory " + first.State,
					fmt.Sprintf("pid %d", os.Getpid()), "on socket " + first.Socket,
					"`KLOOP_SOCKET=" + first.Socket + " kloop daemon stop`", "another KLOOP_STATE_DIR"}
			},
		},
		{
			name:    "same socket, same state directory",
			second:  func(t *testing.T, first Paths) Paths { return first },
			wantErr: func(first Paths) []string { return []string{"already running", first.Socket + ".lock"} },
		},
		{
			name: "another socket, another state directory",
			second: func(t *testing.T, first Paths) Paths {
				dir := tempDir(t)
				return Paths{Socket: filepath.Join(dir, "run", "daemon.sock"), State: filepath.Join(dir, "state")}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			first := Paths{Socket: filepath.Join(dir, "run", "daemon.sock"), State: filepath.Join(dir, "state")}
			runDaemon(t, DaemonOptions{Paths: first})
			second := tt.second(t, first)

			if tt.wantErr == nil {
				runDaemon(t, DaemonOptions{Paths: second})
				stillServes(t, second)
				stillServes(t, first)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, DaemonOptions{Paths: second, Ready: func() { t.Errorf("the second daemon on %s listens", second.Socket) }})
			if !errors.Is(err, ErrAlreadyRunning) {
				t.Fatalf("second Run = %v, want ErrAlreadyRunning", err)
			}
			for _, want := range tt.wantErr(first) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("second Run's error %q does not say %q", err, want)
				}
			}
			if second.Socket != first.Socket {
				if _, err := os.Lstat(second.Socket); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the refused daemon left a socket at %s (%v)", second.Socket, err)
				}
			}
			stillServes(t, first)
		})
	}
}

// TestDaemonDirsAreNeverChmodded: the socket and state directories are
// created 0700 when missing; an existing one that is shared or someone
// else's is refused with advice, never tightened (KLOOP_STATE_DIR=$HOME or
// KLOOP_SOCKET=/tmp/x.sock must not lock anyone out of those).
func TestDaemonDirsAreNeverChmodded(t *testing.T) {
	type dirCase struct {
		name string
		// make prepares dir (or leaves it missing).
		make    func(t *testing.T, dir string)
		wantErr []string // none: the daemon runs and dir is 0700
	}
	existing := func(mode os.FileMode, uid int) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			if uid >= 0 {
				if err := os.Chown(dir, uid, uid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cases := []dirCase{
		{name: "missing", make: func(t *testing.T, dir string) {}},
		{name: "private", make: existing(0o700, -1)},
		{name: "shared like /tmp (1777)", make: existing(os.ModeSticky|0o777, -1), wantErr: []string{"is shared (mode 1777)"}},
		{name: "world-readable (0755)", make: existing(0o755, -1), wantErr: []string{"is shared (mode 0755)", "chmod 700"}},
		{name: "group-readable (0750)", make: existing(0o750, -1), wantErr: []string{"is shared (mode 0750)"}},
	}
	if os.Getuid() == 0 {
		cases = append(cases, dirCase{name: "another user's", make: existing(0o700, 65534), wantErr: []string{"belongs to uid 65534"}})
	}
	roles := []struct {
		name   string
		paths  func(base, dir string) Paths
		advice string
	}{
		{"socket directory", func(base, dir string) Paths {
			return Paths{Socket: filepath.Join(dir, "daemon.sock"), State: filepath.Join(base, "state")}
		}, "point KLOOP_SOCKET at a path in a private directory, such as $XDG_RUNTIME_DIR/kloop/daemon.sock"},
		{"state directory", func(base, dir string) Paths {
			return Paths{Socket: filepath.Join(base, "run", "daemon.sock"), State: dir}
		}, "point KLOOP_STATE_DIR at a directory of kloop's own"},
	}
	for _, role := range roles {
		for _, c := range cases {
			t.Run(role.name+"/"+c.name, func(t *testing.T) {
				base := tempDir(t)
				dir := filepath.Join(base, "d")
				c.make(t, dir)
				before, _ := os.Stat(dir)
				paths := role.paths(base, dir)

				if len(c.wantErr) == 0 {
					runDaemon(t, DaemonOptions{Paths: paths})
					fi, err := os.Stat(dir)
					if err != nil {
						t.Fatal(err)
					}
					if got := fi.Mode() & (os.ModeType | os.ModePerm | os.ModeSticky); got != os.ModeDir|0o700 {
						t.Errorf("%s has mode %v, want drwx------", dir, got)
					}
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				runErr := Run(ctx, DaemonOptions{Paths: paths})
				// Dial (kloop lsp, the CLI) checks before starting a daemon.
				_, dialErr := Dial(ctx, DialOptions{Paths: paths, Executable: "/nonexistent/kloop"})
				for what, err := range map[string]error{"Run": runErr, "Dial": dialErr} {
					if err == nil {
						t.Errorf("%s accepted %s", what, dir)
						continue
					}
					for _, want := range append([]string{"directory " + dir, role.advice}, c.wantErr...) {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: error %q does not say %q", what, err, want)
						}
					}
				}
				after, err := os.Stat(dir)
				if err != nil {
					t.Fatal(err)
				}
				if after.Mode() != before.Mode() || modeBits(after) != modeBits(before) {
					t.Errorf("%s changed from %v to %v", dir, before.Mode(), after.Mode())
				}
				uidBefore, _ := ownerUID(before)
				if uidAfter, _ := ownerUID(after); uidAfter != uidBefore {
					t.Errorf("%s changed owner from uid %d to %d", dir, uidBefore, uidAfter)
				}
				if entries, _ := os.ReadDir(dir); len(entries) > 0 {
					t.Errorf("the refused %s holds %v; want nothing created in it", dir, entries)
				}
			})
		}
	}
}

// TestClientRefusesForeignListener: a socket path in a shared directory
// can be taken by anyone. The client checks who listens (SO_PEERCRED)
// before sending a byte: the initialize it would send names the workspace,
// and what follows is acted on as this user's.
func TestClientRefusesForeignListener(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatalf("this test runs a listener as uid 65534 and needs root (running as uid %d; CI runs as root)", os.Getuid())
	}
	// The test binary's directory is private to root: copy it where uid
	// 65534 can run it, and let it listen in a directory open to all.
	shared := tempDir(t)
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "server.test")
	copyExecutable(t, bin)
	socket := filepath.Join(shared, "daemon.sock")

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), foreignListenerEnv+"="+socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the foreign listener exited")
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no word from the foreign listener in 10s")
		}
		return ""
	}
	if l := next(); l != "listening as uid 65534" {
		t.Fatalf("foreign listener says %q", l)
	}

	state := filepath.Join(tempDir(t), "state")
	dial := DialOptions{Paths: Paths{Socket: socket, State: state}, Executable: "/nonexistent/kloop"}
	tests := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"Dial", func(ctx context.Context) error {
			c, err := Dial(ctx, dial)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"Dial without starting", func(ctx context.Context) error {
			opts := dial
			opts.NoStart = true
			c, err := Dial(ctx, opts)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"Connect (the CLI)", func(ctx context.Context) error {
			c, err := Connect(ctx, ClientOptions{Dial: dial, Workspace: t.TempDir()})
			if err == nil {
				c.Close(ctx)
			}
			return err
		}},
		{"Forward (kloop lsp)", func(ctx context.Context) error {
			in := strings.NewReader(frame(initReq))
			var out strings.Builder
			err := Forward(ctx, in, &out, dial)
			if out.Len() > 0 {
				t.Errorf("the editor got %q from a foreign listener", out.String())
			}
			return err
		}},
		{"DialDAP (kloop dap)", func(ctx context.Context) error {
			c, err := DialDAP(ctx, dial, DAPHello{Dir: "/"})
			if err == nil {
				c.Close()
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.run(ctx)
			if err == nil {
				t.Fatal("the client talked to a socket served by uid 65534")
			}
			for _, want := range []string{"refused to talk to " + socket, "runs as uid 65534", "not as you (uid 0)", "nothing was sent"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if l := next(); !strings.HasPrefix(l, "received 0 bytes") {
				t.Errorf("foreign listener %s; want 0 bytes", l)
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the client went on to prepare a daemon of its own in %s (%v)", state, err)
			}
		})
	}
}

// copyExecutable copies the running test binary to path, 0755.
func copyExecutable(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// lspConn is a raw LSP connection to a daemon, for input no real client
// sends.
type lspConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func (c *lspConn) write(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// response waits (at most 5s) for the response with id, skipping the
// daemon's notifications and requests.
func (c *lspConn) response(id string) (result json.RawMessage, rpcErr *rpcError) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var n int
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				c.t.Fatalf("waiting for the response with id %s: %v", id, err)
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			c.t.Fatalf("read a body: %v", err)
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  *rpcError       `json:"error"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			c.t.Fatalf("daemon sent %q: %v", body, err)
		}
		if m.Method == "" && string(m.ID) == id {
			return m.Result, m.Error
		}
	}
}

// TestDaemonAnswersHugeContentLengthAtOnce: a header that announces more
// than the message limit is answered as soon as it arrives, not after the
// announced bytes (which may never come), and the connection goes on to
// serve the next message.
func TestDaemonAnswersHugeContentLengthAtOnce(t *testing.T) {
	t.Setenv(MaxMessageBytesEnv, "")
	const limit = 4096
	dir := tempDir(t)
	paths := Paths{Socket: filepath.Join(dir, "run", "daemon.sock"), State: filepath.Join(dir, "state")}
	runDaemon(t, DaemonOptions{Paths: paths, MaxMessageBytes: limit})

	bigStart := `{"jsonrpc":"2.0","id":78,"method":"textDocument/hover","params":"` + strings.Repeat("x", 2*limit)
	tests := []struct {
		name   string
		input  string // sent, then nothing until the error is in
		wantID string
		size   string
	}{
		{"10 GB announced, no body", "Content-Length: 9999999999\r\n\r\n", "null", "9999999999"},
		{"length past what an int holds", "Content-Length: 99999999999999999999\r\n\r\n", "null", "more than"},
		{"10 GB announced, body begun", "Content-Length: 9999999999\r\n\r\n" + bigStart, "78", "9999999999"},
		{"over the limit, whole body", frame(bigStart + `"}`), "78", strconv.Itoa(len(bigStart) + 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("unix", paths.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c := &lspConn{t: t, nc: nc, r: bufio.NewReader(nc)}
			c.write(frame(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":1,"rootUri":"file://%s","capabilities":{}}}`, t.TempDir())))
			if _, e := c.response("1"); e != nil {
				t.Fatalf("initialize: %+v", e)
			}

			c.write(tt.input)
			_, e := c.response(tt.wantID)
			want := fmt.Sprintf("exceeds the limit of %d bytes", limit)
			if e == nil || e.Code != codeInvalidRequest || !strings.Contains(e.Message, want) || !strings.Contains(e.Message, tt.size) {
				t.Fatalf("answer to the over-size header = %+v, want -32600 saying %q and %q", e, tt.size, want)
			}
			// The next request follows the bytes sent so far, as a client
			// that gave up on the big message would send it.
			c.write(frame(shutdown))
			if _, e := c.response("2"); e != nil {
				t.Fatalf("shutdown after the over-size message: %+v", e)
			}
		})
	}
	stillServes(t, paths)
}

// TestDefaultPathsBesideTheSandboxCache: without XDG_RUNTIME_DIR the socket
// lives under ~/.cache/kloop, which the sandbox build cache creates 0755.
// The daemon must start there without changing that directory's mode.
func TestDefaultPathsBesideTheSandboxCache(t *testing.T) {
	home := tempDir(t)
	for _, v := range []string{"KLOOP_SOCKET", "KLOOP_STATE_DIR", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", home)
	cache := filepath.Join(home, ".cache", "kloop")
	if err := os.MkdirAll(filepath.Join(cache, "sandbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	paths, err := DefaultPaths()
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, DaemonOptions{Paths: paths})
	stillServes(t, paths)
	for dir, want := range map[string]os.FileMode{cache: 0o755, filepath.Dir(paths.Socket): 0o700, paths.State: 0o700} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", dir, fi.Mode().Perm(), want)
		}
	}
}
