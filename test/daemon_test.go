package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/test/editor"
)

// sharedStatus is the part of kloop.status that tells whose session it is:
// the workspace and the time the daemon created or last changed it.
type sharedStatus struct {
	Workspace string    `json:"workspace"`
	Updated   time.Time `json:"updated"`
}

func TestEditorsStartedTogetherShareOneDaemon(t *testing.T) {
	// Several rounds, each with a fresh environment, because the race
	// between forwarders that find no daemon is what is under test.
	for round := range 4 {
		env := editor.NewEnv(t, kloopBin)
		root := workspace(t, map[string]string{"go.mod": "module x\n"})
		// Each forwarder dials as soon as it starts: starting them back to
		// back makes them all find no daemon and race to start one.
		eds := make([]*editor.Editor, 3)
		for i := range eds {
			eds[i] = editor.Start(t, env, editor.Forwarded)
		}
		var first sharedStatus
		for i, ed := range eds {
			ed.Initialize(root, true)
			var st sharedStatus
			if err := ed.Execute("kloop.status", nil, &st); err != nil {
				t.Fatalf("round %d editor %d: kloop.status: %v", round, i, err)
			}
			if i == 0 {
				first = st
			} else if st != first {
				t.Fatalf("round %d: editor %d sees session %+v, editor 0 sees %+v; want one shared session", round, i, st, first)
			}
		}
		daemons := env.DaemonPIDs()
		if len(daemons) != 1 {
			t.Fatalf("round %d: %d editors started at once left daemons %v, want one", round, len(eds), daemons)
		}

		// The CLI reaches the same daemon and the same session.
		out, err := env.Command(t.Context(), "status", "-o", "json", "-w", root).Output()
		if err != nil {
			t.Fatalf("kloop status -o json: %v", err)
		}
		var st sharedStatus
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("kloop status -o json printed %q: %v", out, err)
		}
		if st != first {
			t.Fatalf("round %d: CLI sees session %+v, editors see %+v", round, st, first)
		}
		if now := env.DaemonPIDs(); len(now) != 1 || now[0] != daemons[0] {
			t.Fatalf("round %d: after the CLI, daemons = %v, want still %v", round, now, daemons)
		}
	}
}

func TestDaemonIdleExit(t *testing.T) {
	const idle = 300 * time.Millisecond
	env := editor.NewEnv(t, kloopBin)
	env.Extra = append(env.Extra, "KLOOP_IDLE_TIMEOUT="+idle.String())
	ed := editor.Start(t, env, editor.Forwarded)
	ed.Initialize(workspace(t, nil), true)
	daemons := env.DaemonPIDs()
	if len(daemons) != 1 {
		t.Fatalf("daemons = %v, want one", daemons)
	}

	// With an editor connected, several idle periods pass and the daemon
	// stays. (This waits on purpose: nothing happening is the behaviour.)
	time.Sleep(5 * idle)
	if editor.Exited(daemons[0]) {
		t.Fatalf("the daemon exited on idle while an editor was connected; log:\n%s", readLog(t, env))
	}
	stillServes(t, ed)

	// The last client leaves and nothing is held: the daemon goes, and
	// takes its socket with it.
	//
	// The other half of the rule, no idle exit while a session holds a
	// claim, an intercept or a process, is not checked here: holding one
	// needs a claim pool in a cluster, which this suite does not start.
	ed.Shutdown()
	ed.Wait()
	waitUntil(t, "the idle daemon to exit", func() bool { return editor.Exited(daemons[0]) })
	if _, err := os.Lstat(env.Socket); !os.IsNotExist(err) {
		t.Errorf("the daemon exited on idle but left its socket %s (%v)", env.Socket, err)
	}
	if log := readLog(t, env); !strings.Contains(log, "idle for "+idle.String()+" with no client and nothing held") {
		t.Errorf("daemon log does not say why it stopped:\n%s", log)
	}
}

func TestSocketIsPrivate(t *testing.T) {
	// A socket directory someone made readable by others is refused, with
	// the fix, and never chmodded: it may be a directory the user shares on
	// purpose (KLOOP_SOCKET=/tmp/x.sock would otherwise lock /tmp).
	shared := editor.NewEnv(t, kloopBin)
	if err := os.MkdirAll(filepath.Dir(shared.Socket), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(shared.Socket), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := shared.Command(t.Context(), "status", "-w", workspace(t, nil)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is shared (mode 0755)") || !strings.Contains(string(out), "KLOOP_SOCKET") {
		t.Errorf("kloop status with a shared socket directory: %v\n%s\nwant a refusal naming the mode and KLOOP_SOCKET", err, out)
	}
	if fi, err := os.Stat(filepath.Dir(shared.Socket)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the shared directory was changed: %v, %v", fi.Mode(), err)
	}

	// Directories kloop creates itself are private.
	env := editor.NewEnv(t, kloopBin)
	ed := editor.Start(t, env, editor.Forwarded)
	ed.Initialize(workspace(t, nil), true)
	for path, want := range map[string]os.FileMode{
		filepath.Dir(env.Socket): os.ModeDir | 0o700,
		env.Socket:               os.ModeSocket | 0o600,
		env.State:                os.ModeDir | 0o700,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}
}

func TestPeerUIDRefused(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	root := workspace(t, nil)
	owner := editor.Start(t, env, editor.Forwarded)
	owner.Initialize(root, true)

	if os.Getuid() != 0 {
		// Only root can start a client as another user. Sessions and CI
		// run as root; a run as a normal user would not prove the check.
		t.Fatalf("this test runs a client as uid 65534 and needs root (running as uid %d)", os.Getuid())
	}
	// The 0700 directory and 0600 socket already keep other users out.
	// Loosen them, here only, so that what refuses the connection below is
	// the daemon's SO_PEERCRED check itself.
	for path, mode := range map[string]os.FileMode{
		filepath.Dir(filepath.Dir(env.Socket)): 0o755,
		filepath.Dir(env.Socket):               0o755,
		env.Socket:                             0o666,
	} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	other := *env
	other.Binary = worldExecutableCopy(t, env.Binary)
	other.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}

	// The other user's editor: its `kloop lsp` checks who listens before it
	// sends a byte, and ends saying why; the daemon refuses it too (its log).
	intruder := editor.Start(t, &other, editor.Forwarded)
	intruder.Send("initialize", map[string]any{"processId": nil, "rootUri": editor.URI(root), "capabilities": map[string]any{}})
	_ = intruder.WaitClosed()
	for _, want := range []string{"runs as uid 0, not as you (uid 65534)", "nothing was sent"} {
		if !strings.Contains(intruder.Stderr(), want) {
			t.Errorf("the other user's kloop lsp said %q; want %q", intruder.Stderr(), want)
		}
	}

	// The CLI of the other user is refused too, and says why.
	out, err := other.Command(t.Context(), "status", "-w", root).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "runs as uid 0, not as you (uid 65534)") {
		t.Errorf("kloop status as uid 65534: %v\n%s\nwant a failure naming both uids", err, out)
	}

	// The owner's editor was never disturbed.
	stillServes(t, owner)
	if log := readLog(t, env); !strings.Contains(log, "refused connection") {
		t.Errorf("daemon log does not record the refusal:\n%s", log)
	}
}

// worldExecutableCopy copies the kloop binary where another user can run it:
// the test binary's directory is private to root.
func worldExecutableCopy(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "kloop-shared-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return editor.WorldExecutable(t, bin, dir)
}

// readLog returns the daemon's log of env.
func readLog(t *testing.T, env *editor.Env) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.State, "daemon.log"))
	if err != nil {
		t.Fatalf("read the daemon log: %v", err)
	}
	return string(data)
}

// TestConcurrentRequestsFromTwoEditors: editors fire requests without
// waiting for answers (VS Code asks for lenses again on every change). Two
// of them on one daemon, many requests in flight on the same documents:
// every request gets the right answer. Under `go test -race` (the daemon is
// then race-built too) this is also the daemon's data race check.
func TestConcurrentRequestsFromTwoEditors(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	root := workspace(t, map[string]string{"go.mod": "module x\n", "cmd/orders/main.go": ordersMain})
	path := filepath.Join(root, "cmd/orders/main.go")
	eds := []*editor.Editor{editor.Start(t, env, editor.Forwarded), editor.Start(t, env, editor.Forwarded)}
	for _, ed := range eds {
		ed.Initialize(root, true)
		ed.Open(path, "go", ordersMain)
	}
	lens := map[string]any{"textDocument": map[string]any{"uri": editor.URI(path)}}
	type pending struct {
		ed     *editor.Editor
		id     int
		lenses bool
	}
	var sent []pending
	for range 50 {
		for _, ed := range eds {
			sent = append(sent, pending{ed, ed.Send("textDocument/codeLens", lens), true})
			sent = append(sent, pending{ed, ed.Send("workspace/executeCommand", map[string]any{"command": "kloop.status"}), false})
		}
	}
	for _, p := range sent {
		m := p.ed.Await(p.id)
		if m.Error != nil {
			t.Fatalf("request %d: %v", p.id, m.Error)
		}
		if p.lenses {
			var lenses []editor.Lens
			if err := json.Unmarshal(m.Result, &lenses); err != nil || len(lenses) != 1 || lenses[0].Range.Start.Line != 5 {
				t.Fatalf("codeLens request %d = %s (%v), want the \"& run\" lens on line 5", p.id, m.Result, err)
			}
		} else {
			var st sharedStatus
			if err := json.Unmarshal(m.Result, &st); err != nil || st.Workspace != root {
				t.Fatalf("kloop.status request %d = %s (%v), want workspace %s", p.id, m.Result, err, root)
			}
		}
	}
	if n := len(env.DaemonPIDs()); n != 1 {
		t.Fatalf("%d daemons, want one", n)
	}
}

// TestEditorOpeningAsTheDaemonIdlesOut: an editor that connects just as
// the daemon decides to exit on idle must still get a server, not a dead
// connection. A tiny idle timeout makes every connection race the exit.
func TestEditorOpeningAsTheDaemonIdlesOut(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	env.Extra = append(env.Extra, "KLOOP_IDLE_TIMEOUT=1ms")
	root := workspace(t, nil)
	for range 20 {
		ed := editor.Start(t, env, editor.Forwarded)
		ed.Initialize(root, true)
		stillServes(t, ed)
		ed.Shutdown()
		ed.Wait()
		out, err := env.Command(t.Context(), "status", "-o", "json", "-w", root).CombinedOutput()
		if err != nil {
			t.Fatalf("kloop status as the daemon idles out: %v\n%s", err, out)
		}
	}
}

// `kloop daemon stats` reports the running daemon's own process, in both
// output forms, and says so plainly when no daemon runs.
func TestDaemonStats(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	if out, err := env.Command(t.Context(), "daemon", "stats").CombinedOutput(); err == nil || !strings.Contains(string(out), "no kloop daemon is running") {
		t.Errorf("stats with no daemon: err %v, output %q; want an error saying none runs", err, out)
	}
	ed := editor.Start(t, env, editor.Forwarded)
	ed.Initialize(workspace(t, map[string]string{"go.mod": "module x\n"}), true)
	pids := env.DaemonPIDs()
	if len(pids) != 1 {
		t.Fatalf("daemons: %v", pids)
	}

	out, err := env.Command(t.Context(), "daemon", "stats", "-o", "json", "--gc").Output()
	if err != nil {
		t.Fatalf("kloop daemon stats -o json: %v", err)
	}
	var st struct {
		PID            int    `json:"pid"`
		Goroutines     int    `json:"goroutines"`
		HeapAllocBytes uint64 `json:"heapAllocBytes"`
		RSSBytes       int64  `json:"rssBytes"`
		OpenFiles      int    `json:"openFiles"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("kloop daemon stats -o json printed %q: %v", out, err)
	}
	if st.PID != pids[0] || st.Goroutines == 0 || st.HeapAllocBytes == 0 || st.RSSBytes == 0 || st.OpenFiles <= 0 {
		t.Errorf("stats %+v; want those of daemon %d, all counts set", st, pids[0])
	}

	out, err = env.Command(t.Context(), "daemon", "stats").Output()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("pid          %d", pids[0])) || !strings.Contains(string(out), "goroutines") {
		t.Errorf("kloop daemon stats: err %v, output %q", err, out)
	}
	if out, err := env.Command(t.Context(), "daemon", "stats", "-o", "yaml").CombinedOutput(); err == nil || !strings.Contains(string(out), "use json or text") {
		t.Errorf("-o yaml: err %v, output %q; want a clear refusal", err, out)
	}
}

// `kloop version -o json` has what a bug report needs; the text form stays
// the one line "kloop VERSION", which editors and the agent image test parse.
func TestVersion(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	out, err := env.Command(t.Context(), "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kloop version -o json: %v", err)
	}
	var v struct{ Version, Go, Platform, Delve, ClientGo string }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("kloop version -o json printed %q: %v", out, err)
	}
	if v.Version == "" || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH || !strings.HasPrefix(v.Delve, "v") || !strings.HasPrefix(v.ClientGo, "v") {
		t.Errorf("version %+v", v)
	}
	out, err = env.Command(t.Context(), "version").Output()
	if err != nil || string(out) != "kloop "+v.Version+"\n" {
		t.Errorf("kloop version: err %v, output %q, want %q", err, out, "kloop "+v.Version+"\n")
	}
}

// TestKloopWithoutArgumentsSaysWhatToRunNext is a new user's first two
// commands: `kloop` alone lists the loop's commands in order, and an
// intercept with no cluster configured says how to get one instead of
// client-go's KUBERNETES_MASTER.
func TestKloopWithoutArgumentsSaysWhatToRunNext(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	out, err := env.Command(t.Context()).Output()
	if err != nil {
		t.Fatalf("kloop: %v", err)
	}
	last := -1
	for _, step := range []string{"kloop sandbox up", "kloop pool create dev --namespaces 5 --default", "kloop claim", "kloop intercept NAME --program ./cmd/NAME", "kloop status", "kloop release"} {
		i := strings.Index(string(out), step)
		if i < 0 || i < last {
			t.Errorf("kloop printed no %q after the previous step:\n%s", step, out)
		}
		last = i
	}

	home := t.TempDir()
	env.Extra = []string{"KUBECONFIG=" + filepath.Join(home, "none"), "HOME=" + home}
	cmd := env.Command(t.Context(), "intercept", "inventory", "--program", "./cmd/inventory")
	cmd.Dir = t.TempDir()
	got, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("intercept without a kubeconfig succeeded:\n%s", got)
	}
	for _, want := range []string{"no kubeconfig found", "kloop claim", "kloop sandbox up"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("intercept without a kubeconfig printed no %q:\n%s", want, got)
		}
	}
}
