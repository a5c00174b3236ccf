// Package run starts and stops the local program that takes an intercept's
// traffic: each in its own process group, with the environment the caller
// resolved from the pod, its output captured line by line, and readiness
// judged by its port. Supervisor adds crash-loop back-off on top, and
// KillOrphan cleans up after a daemon that died while a program ran.
package run

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stream says which output a line came from.
type Stream int

// The two outputs of a program.
const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// Defaults for the zero values of Spec.
const (
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopGrace    = 5 * time.Second
	tailLines           = 20
	// Readiness is polled often at first, when a relaunched Go program is
	// most likely to come up, and less often for slow starters.
	readyPollFast   = 2 * time.Millisecond
	readyPollSlow   = 10 * time.Millisecond
	readyFastPeriod = 500 * time.Millisecond
)

// Spec says how to run a program.
type Spec struct {
	// Argv is the program and its arguments.
	Argv []string
	// Dir is the working directory; "" is the daemon's.
	Dir string
	// Env is the complete environment (pod env, KLOOP_ROOT, proxy
	// variables, PATH...); nil inherits the daemon's.
	Env []string
	// Port is the local TCP port the program listens on, checked on
	// 127.0.0.1. 0 means the program serves no port: it is ready once started.
	Port int
	// ReadyPath, when set, must answer an HTTP request on Port with a
	// status from 200 to 399 (what a Kubernetes httpGet probe accepts)
	// before the program counts as ready, instead of the port merely
	// accepting connections.
	ReadyPath string
	// ReadyTimeout bounds the wait for readiness; DefaultReadyTimeout if 0.
	ReadyTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL;
	// DefaultStopGrace if 0.
	StopGrace time.Duration
	// OnLine receives every output line, one call at a time. May be nil.
	OnLine func(stream Stream, line string)
	// OnStart is called right after the process started and before
	// readiness, so the caller can record pid, group and start time before
	// anything else can go wrong. An error stops the process and fails Start.
	OnStart func(Started) error
}

func (s *Spec) readyTimeout() time.Duration {
	if s.ReadyTimeout > 0 {
		return s.ReadyTimeout
	}
	return DefaultReadyTimeout
}

func (s *Spec) stopGrace() time.Duration {
	if s.StopGrace > 0 {
		return s.StopGrace
	}
	return DefaultStopGrace
}

func (s *Spec) name() string {
	if len(s.Argv) == 0 {
		return "program"
	}
	return s.Argv[0]
}

// Started identifies a running program for the state file. Pass the three
// numbers to KillOrphan after a daemon crash.
type Started struct {
	Pid       int
	Pgid      int
	StartTime uint64
}

// PortInUseError means something else already listens on the program's port.
type PortInUseError struct {
	Port  int
	Owner string // "pid 123 (python3)" when known
}

func (e *PortInUseError) Error() string {
	who := "another process"
	if e.Owner != "" {
		who = e.Owner
	}
	return fmt.Sprintf("local port %d is already in use by %s; stop it, or give the program another local port (such as --port %d:%d)", e.Port, who, e.Port, e.Port+10000)
}

// ExitError means the program exited while it was starting or running.
type ExitError struct {
	Program string
	State   *os.ProcessState
	// Tail holds the last lines the program wrote to stderr (stdout when
	// stderr stayed empty).
	Tail []string
	// Early is true when it exited before it became ready.
	Early bool
}

func (e *ExitError) Error() string {
	when := "exited"
	if e.Early {
		when = "exited before it was ready"
	}
	msg := fmt.Sprintf("%s %s (%s)", e.Program, when, describeExit(e.State))
	return msg + outputSuffix(e.Tail)
}

// LogValue is the error without the program's output: the user sees that
// in the error, but logs must not keep it (it may hold secrets).
func (e *ExitError) LogValue() slog.Value { return slog.StringValue(OmitOutput(e.Error())) }

// outputMarker starts the program's output in an error message.
const outputMarker = "; last output:\n"

func outputSuffix(tail []string) string {
	if len(tail) == 0 {
		return ""
	}
	return outputMarker + strings.Join(tail, "\n")
}

// OmitOutput cuts the program's output from the message of an ExitError or
// a NotReadyError, for logs.
func OmitOutput(msg string) string {
	if i := strings.Index(msg, outputMarker); i >= 0 {
		return msg[:i] + " (output not logged)"
	}
	return msg
}

func describeExit(st *os.ProcessState) string {
	if st == nil {
		return "unknown status"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(st.ExitCode())
}

// NotReadyError means the program kept running but never became ready; it
// has been stopped.
type NotReadyError struct {
	Program string
	Port    int
	Path    string
	Timeout time.Duration
	Tail    []string
}

func (e *NotReadyError) Error() string {
	what := fmt.Sprintf("open port %d on 127.0.0.1", e.Port)
	if e.Path != "" {
		what = fmt.Sprintf("answer HTTP on http://127.0.0.1:%d%s", e.Port, e.Path)
	}
	msg := fmt.Sprintf("%s did not %s within %s, so it was stopped; make it listen on 127.0.0.1:%d (check the port it reads from its environment), or raise the readiness timeout", e.Program, what, e.Timeout, e.Port)
	return msg + outputSuffix(e.Tail)
}

// LogValue is the error without the program's output (see ExitError's).
func (e *NotReadyError) LogValue() slog.Value { return slog.StringValue(OmitOutput(e.Error())) }

// CheckPortFree fails with *PortInUseError when something listens on
// 127.0.0.1:port (or on all addresses).
func CheckPortFree(port int) error {
	if port <= 0 {
		return nil
	}
	if port > 65535 {
		return fmt.Errorf("local port %d is out of range 1..65535", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return &PortInUseError{Port: port, Owner: listenerOwner(port)}
		}
		return fmt.Errorf("check local port %d: %w", port, err)
	}
	return l.Close()
}

// Process is one started program.
type Process struct {
	spec Spec
	cmd  *exec.Cmd
	info Started

	outMu            sync.Mutex // serialises OnLine and guards the tails
	errTail, outTail []string

	stopOnce sync.Once
	stopping chan struct{}
	done     chan struct{}
	state    *os.ProcessState
}

// Start checks that the port is free, starts the program in its own process
// group, calls OnStart, and waits until it is ready. On any failure the
// process is stopped (its whole group) before Start returns.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, errors.New("start program: no command given")
	}
	if err := CheckPortFree(spec.Port); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name(), err)
	}
	p, err := spawn(spec)
	if err != nil {
		return nil, err
	}
	if spec.OnStart != nil {
		if err := spec.OnStart(p.info); err != nil {
			p.Stop(context.Background())
			return nil, fmt.Errorf("start %s: record started process: %w", spec.name(), err)
		}
	}
	if err := p.waitReady(ctx); err != nil {
		p.Stop(context.Background())
		return nil, err
	}
	return p, nil
}

func spawn(spec Spec) (*Process, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: stdout pipe: %w", spec.name(), err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start %s: stderr pipe: %w", spec.name(), err)
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout = outW
	cmd.Stderr = errW
	// Its own group, so that Stop reaches children (go run, shell wrappers,
	// gradle daemons) and a terminal's Ctrl-C on the daemon does not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name(), err)
	}
	p := &Process{spec: spec, cmd: cmd, stopping: make(chan struct{}), done: make(chan struct{})}
	p.info = Started{Pid: cmd.Process.Pid, Pgid: cmd.Process.Pid}
	if st, err := readProcStat(p.info.Pid); err == nil {
		p.info.StartTime = st.startTime
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go p.readLines(&readers, outR, Stdout)
	go p.readLines(&readers, errR, Stderr)
	go p.wait(&readers, outR, errR)
	return p, nil
}

// Info returns the pid, process group and start time.
func (p *Process) Info() Started { return p.info }

// Done is closed once the process and its group are gone and reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited returns why the process ended, or nil while it runs.
func (p *Process) Exited() *ExitError {
	select {
	case <-p.done:
	default:
		return nil
	}
	return &ExitError{Program: p.spec.name(), State: p.state, Tail: p.tail()}
}

// Stopped reports whether Stop was called, telling a requested end from a
// crash.
func (p *Process) Stopped() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, waits up to the grace period,
// then SIGKILLs the group. It returns once the process is reaped (or ctx
// ends). Calling it again, or after the process exited, is harmless.
func (p *Process) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stopping) })
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.info.Pgid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): SIGTERM: %w", p.spec.name(), p.info.Pid, err)
	}
	grace := time.NewTimer(p.spec.stopGrace())
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): SIGKILL: %w", p.spec.name(), p.info.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s (pid %d): %w", p.spec.name(), p.info.Pid, ctx.Err())
	}
}

// wait blocks until the leader exits, ends what is left of its group, reaps
// it and collects the rest of its output.
func (p *Process) wait(readers *sync.WaitGroup, pipes ...io.Closer) {
	pid := p.info.Pid
	// Wait without reaping: while the leader is a zombie its pid, and so the
	// group id, cannot be reused, which makes the group kill below safe.
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil || !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	// The group lives and dies with its leader: leftovers (children of a
	// shell wrapper) get the grace period, then SIGKILL, so none keeps the
	// port.
	if members := liveGroupMembers(p.info.Pgid); len(members) > 0 {
		killGroup(context.Background(), p.info.Pgid, p.spec.stopGrace())
	}
	syscall.Kill(-p.info.Pgid, syscall.SIGKILL)
	p.cmd.Wait()
	p.state = p.cmd.ProcessState

	// A process that escaped the group (setsid) may still hold the pipes;
	// do not wait for it forever.
	flushed := make(chan struct{})
	go func() { readers.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(time.Second):
		for _, c := range pipes {
			c.Close()
		}
		<-flushed
	}
	close(p.done)
}

func (p *Process) readLines(wg *sync.WaitGroup, r *os.File, stream Stream) {
	defer wg.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			// A line longer than the buffer arrives in pieces, each one a line.
			p.line(stream, strings.TrimRight(string(chunk), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (p *Process) line(stream Stream, text string) {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	tail := &p.outTail
	if stream == Stderr {
		tail = &p.errTail
	}
	*tail = append(*tail, text)
	if len(*tail) > tailLines {
		*tail = (*tail)[len(*tail)-tailLines:]
	}
	if p.spec.OnLine != nil {
		p.spec.OnLine(stream, text)
	}
}

func (p *Process) tail() []string {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if len(p.errTail) > 0 {
		return append([]string(nil), p.errTail...)
	}
	return append([]string(nil), p.outTail...)
}

func (p *Process) waitReady(ctx context.Context) error {
	if p.spec.Port <= 0 {
		return nil
	}
	timeout := p.spec.readyTimeout()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.spec.Port))
	var client *http.Client
	if p.spec.ReadyPath != "" {
		client = &http.Client{
			Timeout: time.Second,
			// Proxy nil: the daemon's own HTTP_PROXY must not catch loopback probes.
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
	}
	began := time.Now()
	tick := time.NewTicker(readyPollFast)
	defer tick.Stop()
	slow := false
	for {
		if !slow && time.Since(began) > readyFastPeriod {
			tick.Reset(readyPollSlow)
			slow = true
		}
		if p.probe(ctx, addr, client) {
			return nil
		}
		select {
		case <-p.done:
			e := p.Exited()
			e.Early = true
			return e
		case <-deadline.C:
			return &NotReadyError{Program: p.spec.name(), Port: p.spec.Port, Path: p.spec.ReadyPath, Timeout: timeout, Tail: p.tail()}
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be ready: %w", p.spec.name(), ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *Process) probe(ctx context.Context, addr string, client *http.Client) bool {
	if client == nil {
		d := net.Dialer{Timeout: 250 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.spec.ReadyPath, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// WriteLines returns an OnLine that writes each line to w with a newline,
// for a log file or an editor's output channel. Write errors are dropped:
// a full disk must not stop the program.
func WriteLines(w io.Writer) func(Stream, string) {
	return func(_ Stream, line string) {
		io.WriteString(w, line+"\n")
	}
}
