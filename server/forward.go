package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DialOptions say how to reach the daemon and how to start one.
type DialOptions struct {
	Paths Paths
	// Executable is the kloop binary to start as the daemon; empty means
	// this process's own executable.
	Executable string
	// DaemonArgs are extra arguments for `kloop daemon`.
	DaemonArgs []string
	// StartTimeout bounds the wait for a freshly started daemon.
	StartTimeout time.Duration
	// NoStart makes Dial fail instead of starting a daemon.
	NoStart bool
}

// Dial connects to the daemon, starting one when none answers. Forwarders
// that race here serialise on a start lock, so two editors opening at once
// end up on one daemon.
func Dial(ctx context.Context, opts DialOptions) (net.Conn, error) {
	if c, err := dialSocket(opts.Paths.Socket); err == nil {
		return c, nil
	} else if opts.NoStart {
		return nil, fmt.Errorf("no kloop daemon answers on %s: %w", opts.Paths.Socket, err)
	}
	if err := ensurePrivateDir(dirOf(opts.Paths.Socket)); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(opts.Paths.State); err != nil {
		return nil, err
	}
	lock, err := lockBlocking(ctx, opts.Paths.startLockFile())
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	// Whoever held the lock before us may have started it.
	if c, err := dialSocket(opts.Paths.Socket); err == nil {
		return c, nil
	}
	return startDaemon(ctx, opts)
}

func dialSocket(path string) (net.Conn, error) {
	return net.DialTimeout("unix", path, 2*time.Second)
}

func dirOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "."
	}
	return path[:i]
}

func startDaemon(ctx context.Context, opts DialOptions) (net.Conn, error) {
	exe := opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the kloop executable to start the daemon: %w", err)
		}
	}
	logf, err := os.OpenFile(opts.Paths.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close()
	start, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(exe, append([]string{"daemon"}, opts.DaemonArgs...)...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "KLOOP_SOCKET="+opts.Paths.Socket, "KLOOP_STATE_DIR="+opts.Paths.State)
	// Its own session: the daemon must outlive the editor that started it
	// and not receive the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon %s: %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := dialSocket(opts.Paths.Socket); err == nil {
			return c, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the daemon exited at start (%v): %s; full log in %s", err, logTail(opts.Paths.LogFile(), start), opts.Paths.LogFile())
		case <-deadline.C:
			return nil, fmt.Errorf("the daemon did not answer on %s within %s; see %s", opts.Paths.Socket, timeout, opts.Paths.LogFile())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// logTail returns the last lines written to the log since offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(no log)"
	}
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return "(nothing logged)"
	}
	return strings.Join(lines, " | ")
}

// Forward is `kloop lsp`: it relays the editor's stdio to the daemon,
// byte for byte, so the daemon sees exactly what the editor sent. It
// returns when either side closes.
func Forward(ctx context.Context, in io.Reader, out io.Writer, opts DialOptions) error {
	conn, err := Dial(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		// The editor closed stdin: let the daemon finish and close its side.
		if uc, ok := conn.(*net.UnixConn); ok {
			uc.CloseWrite()
		}
		if err != nil {
			done <- fmt.Errorf("relay editor to daemon: %w", err)
		}
	}()
	go func() {
		_, err := io.Copy(out, conn)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			done <- fmt.Errorf("relay daemon to editor: %w", err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}
