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
	"sync"
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
	} else if errors.Is(err, errForeignServer) {
		return nil, err
	} else if opts.NoStart {
		return nil, fmt.Errorf("no kloop daemon answers on %s: %w", opts.Paths.Socket, err)
	}
	if err := ensurePrivateDir(dirOf(opts.Paths.Socket), socketDir); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(opts.Paths.State, stateDir); err != nil {
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
	} else if errors.Is(err, errForeignServer) {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		c, err := startDaemon(ctx, opts)
		// A daemon that stopped cleanly before we reached it went idle
		// (a very short --idle-timeout on a loaded machine): start another.
		if errors.Is(err, errStoppedBeforeConnect) && attempt < maxConnectAttempts {
			continue
		}
		return c, err
	}
}

// maxConnectAttempts bounds how often a client starts over when the daemon
// goes away before serving it.
const maxConnectAttempts = 3

// errStoppedBeforeConnect marks a started daemon that exited with success
// before the starter connected.
var errStoppedBeforeConnect = errors.New("the daemon stopped before it could be reached")

// dialSocket connects to the daemon's socket and checks, before anything is
// written, that the listener is this user's (checkServer).
func dialSocket(path string) (net.Conn, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	if err := checkServer(c, path); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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

	// The daemon writes its log to daemon.log itself, size-bounded; its
	// stderr (below) still goes there, for early crashes.
	cmd := exec.Command(exe, append([]string{"daemon", "--log-file", opts.Paths.LogFile()}, opts.DaemonArgs...)...)
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
		} else if errors.Is(err, errForeignServer) {
			return nil, err
		}
		select {
		case err := <-exited:
			if err == nil {
				return nil, fmt.Errorf("%w: %s", errStoppedBeforeConnect, logTail(opts.Paths.LogFile(), start))
			}
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
//
// A daemon can go away just as an editor connects: it was exiting on idle,
// or it was killed and a new one is not up yet. Until the daemon has sent
// its first byte the forwarder keeps what the editor sent; if the
// connection ends before then, it connects again (starting a daemon) and
// replays it, so the editor never sees the gap.
func Forward(ctx context.Context, in io.Reader, out io.Writer, opts DialOptions) error {
	conn, err := Dial(ctx, opts)
	if err != nil {
		return err
	}
	r := &relay{conn: conn, sent: []byte{}}
	defer func() { r.current().Close() }()
	done := make(chan error, 2)
	go func() {
		err := r.fromEditor(in)
		if err != nil {
			done <- fmt.Errorf("relay editor to daemon: %w", err)
		}
	}()
	go func() { done <- r.toEditor(ctx, out, opts) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// maxReplayBytes bounds what is kept for a replay; an editor that sends
// more before any answer is not waiting on a dead daemon.
const maxReplayBytes = 1 << 20

// relay is one editor's connection through the forwarder.
type relay struct {
	mu   sync.Mutex
	conn net.Conn
	// sent is what the editor sent before the daemon's first byte; nil
	// once the daemon answered, or once too much was sent to keep.
	sent []byte
	// inClosed records that the editor closed its end.
	inClosed bool
}

func (r *relay) current() net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn
}

// fromEditor copies the editor's input to the daemon.
func (r *relay) fromEditor(in io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := in.Read(buf)
		if n > 0 {
			r.mu.Lock()
			if r.sent != nil {
				if len(r.sent)+n > maxReplayBytes {
					r.sent = nil
				} else {
					r.sent = append(r.sent, buf[:n]...)
				}
			}
			c := r.conn
			r.mu.Unlock()
			// A failed write is not final while a replay may follow: the
			// read side notices the closed connection and decides.
			if _, err := c.Write(buf[:n]); err != nil && !r.replayable() {
				return err
			}
		}
		if rerr != nil {
			// The editor closed stdin: let the daemon finish and close
			// its side.
			r.mu.Lock()
			r.inClosed = true
			c := r.conn
			r.mu.Unlock()
			closeWrite(c)
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}

func (r *relay) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent != nil
}

// toEditor copies the daemon's output to the editor, reconnecting while
// the daemon has not answered yet.
func (r *relay) toEditor(ctx context.Context, out io.Writer, opts DialOptions) error {
	buf := make([]byte, 32<<10)
	attempts := 1
	for {
		c := r.current()
		n, err := c.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.sent = nil
			r.mu.Unlock()
			if _, werr := out.Write(buf[:n]); werr != nil {
				return fmt.Errorf("relay daemon to editor: %w", werr)
			}
		}
		if err == nil {
			continue
		}
		if !r.replayable() || attempts >= maxConnectAttempts || ctx.Err() != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("relay daemon to editor: %w", err)
		}
		attempts++
		if err := r.reconnect(ctx, opts); err != nil {
			return err
		}
	}
}

// reconnect replaces the connection with a new one to a (new) daemon and
// replays what the editor sent so far.
func (r *relay) reconnect(ctx context.Context, opts DialOptions) error {
	conn, err := Dial(ctx, opts)
	if err != nil {
		return fmt.Errorf("the daemon went away before answering, and reconnecting failed: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn.Close()
	r.conn = conn
	if _, err := conn.Write(r.sent); err != nil {
		return fmt.Errorf("replay to the new daemon: %w", err)
	}
	if r.inClosed {
		closeWrite(conn)
	}
	return nil
}

func closeWrite(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
}
