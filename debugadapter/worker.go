package debugadapter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-delve/delve/pkg/logflags"
	"github.com/go-delve/delve/service"
	dlvdap "github.com/go-delve/delve/service/dap"
	"github.com/go-delve/delve/service/debugger"
)

// workerConnFD is the descriptor on which a debug worker finds its DAP connection.
const workerConnFD = 3

// RunWorker is the body of `kloop debug-worker`: it serves Delve's DAP server on the
// connection inherited at fd 3 until the bridge disconnects, the parent dies or ctx ends,
// and then kills every debuggee it started. The worker's own stdout and stderr are what
// the debuggee inherits, so the bridge reads the program's output from them.
func RunWorker(ctx context.Context) error {
	f := os.NewFile(workerConnFD, "dap")
	if f == nil {
		return errors.New("debug-worker: fd 3 is not open; this command is started by `kloop dap`, not by hand")
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("debug-worker: fd 3 is not a socket (%w); this command is started by `kloop dap`, not by hand", err)
	}
	return serveDelve(ctx, conn, os.Getppid())
}

// serveDelve hosts one Delve DAP session on conn. parent is the pid whose death ends it.
func serveDelve(ctx context.Context, conn net.Conn, parent int) error {
	// Delve logs only errors without -log; keep them off the program's stdout.
	if err := logflags.Setup(false, "", ""); err != nil {
		return fmt.Errorf("set up Delve logging: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(hup)
	go func() {
		select {
		case <-hup:
			cancel()
		case <-ctx.Done():
		}
	}()
	// PDEATHSIG covers the parent dying; polling covers the window before prctl took
	// effect and a parent thread (not process) exiting.
	if os.Getppid() != parent {
		cancel()
	}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()

	disconnected := make(chan struct{})
	server := dlvdap.NewServer(&service.Config{
		DisconnectChan: disconnected,
		Debugger:       debugger.Config{Backend: "default"},
	})
	server.RunWithClient(conn)
	select {
	case <-disconnected:
	case <-ctx.Done():
	}
	// Let Delve stop (and kill) its debuggee itself: killing the debuggee under a running
	// continue while Delve halts races inside Delve. If Delve does not finish in time,
	// SIGKILL does it regardless: a traced process cannot hold that up.
	kids := childPIDs(os.Getpid())
	stopped := make(chan struct{})
	go func() {
		server.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
	}
	killProcessGroups(append(kids, childPIDs(os.Getpid())...))
	return nil
}

// childPIDs lists the live children of pid, read from /proc.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(child); ok && ppid == pid {
			kids = append(kids, child)
		}
	}
	return kids
}

// parentOf reads the ppid field of /proc/PID/stat (after the parenthesised command,
// which may itself contain spaces and parentheses).
func parentOf(pid int) (int, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// killProcessGroups SIGKILLs each pid and its process group: Delve starts every debuggee
// in a group of its own, so this also takes the program's own children.
func killProcessGroups(pids []int) {
	for _, pid := range pids {
		if pid <= 1 {
			continue
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// processState is the state letter of /proc/PID/stat (R, S, T, t, Z, ...), 0 if gone.
func processState(pid int) byte {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// worker is the bridge's handle on one running `kloop debug-worker`.
type worker struct {
	cmd    *exec.Cmd
	conn   net.Conn
	stdout io.ReadCloser
	stderr io.ReadCloser
	done   chan struct{} // closed when the process has been reaped
	err    error         // exit status, valid after done

	mu        sync.Mutex
	debuggees []int // last seen children, for cleanup after the worker is gone
}

// startWorker runs the worker command with a socketpair end at fd 3 and pipes for the
// program's output. The worker gets SIGTERM when this process dies, and cleans up.
func startWorker(ctx context.Context, command []string, env []string, log *slog.Logger) (*worker, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start debug worker: socketpair: %w", err)
	}
	local := os.NewFile(uintptr(fds[0]), "dap-bridge")
	remote := os.NewFile(uintptr(fds[1]), "dap-worker")
	defer remote.Close()
	conn, err := net.FileConn(local)
	local.Close()
	if err != nil {
		remote.Close()
		return nil, fmt.Errorf("start debug worker: wrap socket: %w", err)
	}

	// Not CommandContext: on cancellation the worker must get SIGTERM (see stop), so it
	// can kill its debuggee, rather than an immediate SIGKILL that would orphan it.
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{remote}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	// Pipes of our own rather than StdoutPipe: Wait must not close the read ends, the
	// debuggee holds the write ends too and its last words should still arrive.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start debug worker: stdout pipe: %w", err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		conn.Close()
		stdoutR.Close()
		stdoutW.Close()
		return nil, fmt.Errorf("start debug worker: stderr pipe: %w", err)
	}
	cmd.Stdout = stdoutW
	cmd.Stderr = stderrW
	w := &worker{cmd: cmd, conn: conn, stdout: stdoutR, stderr: stderrR, done: make(chan struct{})}
	// PDEATHSIG fires when the thread that forked the worker exits, not the process.
	// Fork from a locked thread that lives exactly as long as the worker.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		w.wait()
	}()
	err = <-started
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		conn.Close()
		stdoutR.Close()
		stderrR.Close()
		return nil, fmt.Errorf("start debug worker %s: %w", command[0], err)
	}
	log.Debug("debug worker started", "pid", cmd.Process.Pid)
	go func() {
		select {
		case <-ctx.Done():
			w.stop(5 * time.Second)
		case <-w.done:
		}
	}()
	return w, nil
}

// wait reaps the worker.
func (w *worker) wait() {
	w.err = w.cmd.Wait()
	close(w.done)
}

// alive reports whether the worker process has not exited yet.
func (w *worker) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// refreshDebuggees remembers the worker's current children; after the worker dies they
// are reparented and can no longer be found from it.
func (w *worker) refreshDebuggees() []int {
	kids := childPIDs(w.cmd.Process.Pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(kids) > 0 || w.alive() {
		w.debuggees = kids
	}
	return append([]int(nil), w.debuggees...)
}

// stop ends the worker: SIGTERM (it kills its debuggee), then SIGKILL after grace, then
// the debuggee's process group in case the worker could not.
func (w *worker) stop(grace time.Duration) {
	w.refreshDebuggees()
	if w.alive() {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(grace):
			_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			_ = w.cmd.Process.Kill()
			select {
			case <-w.done:
			case <-time.After(grace):
			}
		}
	}
	w.conn.Close()
	w.mu.Lock()
	kids := w.debuggees
	w.mu.Unlock()
	killProcessGroups(kids)
}
