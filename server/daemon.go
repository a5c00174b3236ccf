package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kloop/kloop/session"
)

// DefaultIdleTimeout is how long a daemon with no clients and nothing held
// waits before it exits. Editors restart it on demand in well under a
// second, so there is no reason to linger.
const DefaultIdleTimeout = time.Minute

// ErrAlreadyRunning means another daemon owns the socket.
var ErrAlreadyRunning = errors.New("a kloop daemon is already running")

// DaemonOptions configure Run.
type DaemonOptions struct {
	Paths       Paths
	IdleTimeout time.Duration
	Logger      *slog.Logger
	Version     string
	// MaxMessageBytes bounds one LSP message; 0 means DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Engines do the sessions' cluster work (package engines).
	Engines session.Engines
	// DebuggerWait is session.Options.DebuggerWait.
	DebuggerWait time.Duration
	// Ready, when set, is called once the socket accepts connections.
	Ready func()
}

// Run is `kloop daemon`: it owns the socket until ctx ends, `kloop daemon
// stop` is asked, or it has been idle for IdleTimeout.
func Run(ctx context.Context, opts DaemonOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if err := ensurePrivateDir(filepath.Dir(opts.Paths.Socket), socketDir); err != nil {
		return err
	}
	if err := ensurePrivateDir(opts.Paths.State, stateDir); err != nil {
		return err
	}
	lock, err := lockExclusive(opts.Paths.lockFile())
	if err != nil {
		return err
	}
	defer lock.Close()
	// Before anything touches the state (crash recovery reads state.json
	// and stops the programs it lists), and held until the sessions are
	// closed: deferred before the manager exists, so released after it.
	stateLock, err := lockState(opts.Paths)
	if err != nil {
		return err
	}
	defer stateLock.Close()

	// Holding the lock proves no daemon serves the socket: a file there was
	// left by one that died.
	if err := os.Remove(opts.Paths.Socket); err == nil {
		log.Info("removed stale socket of a dead daemon", "socket", opts.Paths.Socket)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", opts.Paths.Socket, err)
	}
	ln, err := net.Listen("unix", opts.Paths.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.Paths.Socket, err)
	}
	defer os.Remove(opts.Paths.Socket)
	if err := os.Chmod(opts.Paths.Socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("make %s private: %w", opts.Paths.Socket, err)
	}

	mgr := session.NewManager(session.Options{
		Logger:  log,
		Store:   session.NewStore(opts.Paths.StateFile()),
		Engines: opts.Engines,
		// Materialized Secret volumes go to the runtime tmpfs when private.
		RuntimeDir:   os.Getenv("XDG_RUNTIME_DIR"),
		Health:       func() []session.Finding { return health(opts.Paths, opts.Version) },
		DebuggerWait: opts.DebuggerWait,
	})
	d := &daemon{opts: opts, log: log, mgr: mgr, ln: ln, lastIdle: time.Now()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.stop = cancel

	log.Info("daemon listening", "socket", opts.Paths.Socket, "pid", os.Getpid(), "version", opts.Version)
	if opts.Ready != nil {
		opts.Ready()
	}
	go d.watchIdle(ctx)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	err = d.accept(ctx)
	d.wg.Wait()
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelClose()
	if cerr := mgr.Close(closeCtx); cerr != nil {
		log.Error("close sessions", "err", cerr)
	}
	log.Info("daemon stopped", "reason", d.reason())
	return err
}

type daemon struct {
	opts DaemonOptions
	log  *slog.Logger
	mgr  *session.Manager
	ln   net.Listener
	stop context.CancelFunc
	wg   sync.WaitGroup

	clients  atomic.Int64
	mu       sync.Mutex
	lastIdle time.Time
	why      string
}

func (d *daemon) accept(ctx context.Context) error {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if err := checkPeer(c); err != nil {
			d.log.Warn("refused connection", "err", err)
			go d.refuse(c, err)
			continue
		}
		d.clients.Add(1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				if d.clients.Add(-1) == 0 {
					d.mu.Lock()
					d.lastIdle = time.Now()
					d.mu.Unlock()
				}
			}()
			if err := d.serveClient(ctx, c); err != nil {
				d.log.Warn("client connection", "err", err)
			}
		}()
	}
}

// refuse tells a client the daemon will not serve it, then hangs up. The
// answer is an LSP error frame, so the editor's log (or the CLI) shows why
// instead of a bare disconnect. It runs on its own goroutine: a client
// that neither reads nor closes must not stall accept.
func (d *daemon) refuse(c net.Conn, why error) {
	defer c.Close()
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      nil,
		"error":   rpcError{codeInvalidRequest, fmt.Sprintf("kloop: the daemon on %s refused this connection: %v; every user runs a daemon of their own: point KLOOP_SOCKET or XDG_RUNTIME_DIR at a directory you own", d.opts.Paths.Socket, why)},
	})
	if err != nil {
		d.log.Error("encode refusal", "err", err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := writeFrame(c, body); err != nil {
		d.log.Debug("tell refused client", "err", err)
		return
	}
	// Closing a unix socket with unread input resets it, and the client
	// would see "connection reset" instead of the refusal. Signal the end,
	// then discard what it sent until it hangs up.
	if uc, ok := c.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
}

func (d *daemon) shutdown(why string) {
	d.mu.Lock()
	if d.why == "" {
		d.why = why
	}
	d.mu.Unlock()
	d.stop()
}

func (d *daemon) reason() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.why == "" {
		return "signal"
	}
	return d.why
}

// watchIdle exits the daemon once it has had no client and held nothing
// for the idle timeout.
func (d *daemon) watchIdle(ctx context.Context) {
	tick := min(d.opts.IdleTimeout/4, time.Second)
	t := time.NewTicker(max(tick, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.clients.Load() > 0 || d.mgr.Holds() {
			d.mu.Lock()
			d.lastIdle = time.Now()
			d.mu.Unlock()
			continue
		}
		d.mu.Lock()
		idle := time.Since(d.lastIdle)
		d.mu.Unlock()
		if idle >= d.opts.IdleTimeout {
			d.shutdown(fmt.Sprintf("idle for %s with no client and nothing held", d.opts.IdleTimeout))
			return
		}
	}
}

// lockExclusive takes a non-blocking flock on path for the caller's life.
func lockExclusive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (lock %s is held); use it, or stop it with `kloop daemon stop`", ErrAlreadyRunning, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// stateHolder is what the daemon holding the state lock records in it.
type stateHolder struct {
	PID    int    `json:"pid"`
	Socket string `json:"socket"`
}

// lockState takes the state directory's lock (Paths.stateLockFile) for the
// daemon's life and records this daemon's pid and socket in it, so that a
// second daemon started on the same state directory, through another socket,
// can say which daemon is in the way and how to reach it.
func lockState(p Paths) (*os.File, error) {
	path := p.stateLockFile()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		holder, ok := readStateHolder(path)
		if !ok {
			return nil, fmt.Errorf("%w on the state directory %s (lock %s is held by a daemon that has not recorded its pid and socket yet); two daemons on one state directory would stop each other's programs: stop the other with `kloop daemon stop` pointed at its socket (KLOOP_SOCKET), or give this one another KLOOP_STATE_DIR", ErrAlreadyRunning, p.State, path)
		}
		return nil, fmt.Errorf("%w on the state directory %s: pid %d, on socket %s. Two daemons on one state directory would stop each other's programs: use that daemon, stop it with `KLOOP_SOCKET=%s kloop daemon stop`, or give this one another KLOOP_STATE_DIR", ErrAlreadyRunning, p.State, holder.PID, holder.Socket, holder.Socket)
	}
	rec, err := json.Marshal(stateHolder{PID: os.Getpid(), Socket: p.Socket})
	if err == nil {
		rec = append(rec, '\n')
		// Written over the old record, then cut to length: a reader never
		// sees an empty file, only the old record or the new one (followed
		// at most by the old one's tail, which the decoder ignores).
		if _, err = f.WriteAt(rec, 0); err == nil {
			err = f.Truncate(int64(len(rec)))
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("record this daemon in %s: %w", path, err)
	}
	return f, nil
}

// readStateHolder reads the record of the daemon that holds the state lock.
// The holder writes it just after taking the lock: an empty file is retried
// for a moment.
func readStateHolder(path string) (stateHolder, bool) {
	for range 50 {
		if data, err := os.ReadFile(path); err == nil {
			var h stateHolder
			if json.NewDecoder(bytes.NewReader(data)).Decode(&h) == nil && h.PID > 0 {
				return h, true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stateHolder{}, false
}

// lockBlocking waits for an exclusive flock on path.
func lockBlocking(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
