package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configure a Bridge. The zero value debugs locally with the current directory as
// the base for relative paths.
type Options struct {
	// Dir resolves a relative "program" or "cwd"; default: the process's working directory.
	Dir string
	// StagingDir holds the debug binaries; default: a fresh temporary directory, removed
	// when the session ends.
	StagingDir string
	// WorkerCommand starts a debug worker; default: this executable with "debug-worker".
	WorkerCommand []string
	// ResolveEnv gives the environment of the program (pod env, KLOOP_ROOT, proxy) and
	// makes sure the claim and intercept exist. The daemon sets it; without it a launch
	// configuration that names a workload is refused.
	ResolveEnv func(ctx context.Context, cfg LaunchConfig) (map[string]string, error)
	// Logger receives the bridge's own diagnostics; default: discarded.
	Logger *slog.Logger
}

// ErrNotLaunched is returned by Relaunch before a launch request succeeded.
var ErrNotLaunched = errors.New("no program is being debugged yet: the editor has not sent a successful launch request")

// ErrSessionEnded is returned by Relaunch after the editor ended the debug session.
var ErrSessionEnded = errors.New("the debug session has ended")

// RelaunchResult says how long each step of a relaunch took.
type RelaunchResult struct {
	Build   time.Duration
	Restart time.Duration // from the new binary in place to Delve ready for breakpoints
}

// Bridge is one editor debug session: it owns the editor's DAP connection and the debug
// worker behind it, which it restarts or replaces as the program is rebuilt.
type Bridge struct {
	opts Options
	log  *slog.Logger

	editor  *frameWriter
	ctx     context.Context // the session's; workers die with it
	staging string

	relaunchMu sync.Mutex // one launch or relaunch at a time

	mu          sync.Mutex
	initArgs    json.RawMessage
	initialized bool
	launching   bool
	launched    bool
	cfg         LaunchConfig
	target      target
	binary      string
	nextBinary  string
	delveLaunch json.RawMessage
	wd          string // the program's working directory
	wc          *workerConn
	closing     bool
	relaunching bool
	// running is whether Delve is resuming the program (it answered a run command and
	// has not reported a stop since); readWorker keeps it in wire order.
	running bool
	// swallowStops hides the stop the bridge causes itself by pausing before a restart.
	swallowStops bool
	initWaiters  []chan struct{}
}

// New returns a bridge for one session; call Serve once.
func New(opts Options) *Bridge {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bridge{opts: opts, log: log}
}

// Serve speaks DAP with the editor on conn until the editor disconnects, the stream
// breaks or ctx ends; then the worker and the program are stopped. It returns nil when
// the editor ended the session (disconnect request or EOF).
func (b *Bridge) Serve(ctx context.Context, conn io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ctx = ctx
	b.editor = &frameWriter{w: conn}
	if err := b.prepareStaging(); err != nil {
		return err
	}
	defer b.shutdown()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()

	fr := newFrameReader(conn)
	for {
		body, err := fr.Read()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			var fe *FramingError
			if errors.As(err, &fe) {
				b.output("important", "kloop: "+fe.Error()+"; ending the debug session\n")
				b.event("terminated", nil)
				return fe
			}
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			return fmt.Errorf("read from editor: %w", err)
		}
		env, err := parseEnvelope(body)
		if err != nil {
			b.log.Warn("malformed message from editor", "err", err)
			b.respondError(env.Seq, orDefault(env.Command, "unknown"), "malformed DAP message: "+err.Error())
			continue
		}
		switch env.Type {
		case "request":
			if b.onEditorRequest(ctx, env, body) {
				return nil
			}
		case "response":
			b.onEditorResponse(env, body)
		default:
			b.log.Debug("ignoring event from editor", "event", env.Event)
		}
	}
}

func (b *Bridge) prepareStaging() error {
	dir := b.opts.StagingDir
	if dir == "" {
		d, err := os.MkdirTemp("", "kloop-debug-")
		if err != nil {
			return fmt.Errorf("create staging directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create staging directory %s: %w", dir, err)
	}
	b.staging = dir
	b.binary = filepath.Join(dir, debugBinaryName)
	b.nextBinary = filepath.Join(dir, debugBinaryName+".next")
	return nil
}

func (b *Bridge) shutdown() {
	b.mu.Lock()
	b.closing = true
	wc := b.wc
	b.mu.Unlock()
	if wc != nil {
		wc.w.stop(5 * time.Second)
	}
	if b.opts.StagingDir == "" && b.staging != "" {
		_ = os.RemoveAll(b.staging)
	}
}

// onEditorRequest routes one request; it returns true when the session is over.
func (b *Bridge) onEditorRequest(ctx context.Context, env envelope, body []byte) bool {
	switch env.Command {
	case "initialize":
		b.onInitialize(env)
	case "launch":
		go b.onLaunch(ctx, env)
	case "attach":
		b.respondError(env.Seq, env.Command, `kloop debugs the program it builds: use "request": "launch" with "program" (and "workload" to take cluster traffic)`)
	case "restart", "kloop/relaunch":
		go func() {
			res, err := b.Relaunch(ctx)
			if err != nil {
				b.respondError(env.Seq, env.Command, err.Error())
				return
			}
			b.respond(env.Seq, env.Command, map[string]any{
				"buildMillis":   res.Build.Milliseconds(),
				"restartMillis": res.Restart.Milliseconds(),
			})
		}()
	case "disconnect":
		b.onDisconnect(env, body)
		return true
	default:
		b.forward(env, body)
	}
	return false
}

// forward sends an editor request to Delve; the answer comes back through readWorker.
func (b *Bridge) forward(env envelope, body []byte) {
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	if wc == nil || !wc.alive() {
		b.respondError(env.Seq, env.Command, fmt.Sprintf("%q needs a running program: the launch has not finished, or the program is being rebuilt", env.Command))
		return
	}
	if err := wc.forward(body, env.Seq, env.Command); err != nil {
		b.respondError(env.Seq, env.Command, "send to the debugger: "+err.Error())
	}
}

// onEditorResponse answers a request Delve sent to the editor (e.g. runInTerminal).
func (b *Bridge) onEditorResponse(env envelope, body []byte) {
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	if wc == nil {
		return
	}
	delveSeq, ok := wc.takeReverse(env.RequestSeq)
	if !ok {
		b.log.Debug("response to unknown reverse request", "request_seq", env.RequestSeq)
		return
	}
	if _, err := wc.out.send(body, delveSeq, nil); err != nil {
		b.log.Warn("send reverse response to Delve", "err", err)
	}
}

func (b *Bridge) onInitialize(env envelope) {
	args := map[string]any{}
	if len(env.Arguments) > 0 {
		if err := json.Unmarshal(env.Arguments, &args); err != nil {
			b.respondError(env.Seq, env.Command, "initialize arguments are not a JSON object: "+err.Error())
			return
		}
	}
	if pf, ok := args["pathFormat"]; ok && pf != "path" {
		b.respondError(env.Seq, env.Command, fmt.Sprintf(`pathFormat %v is not supported: kloop (like Delve) needs "path"`, pf))
		return
	}
	for _, k := range []string{"linesStartAt1", "columnsStartAt1"} {
		if v, ok := args[k]; ok && v != true {
			b.respondError(env.Seq, env.Command, fmt.Sprintf("%s=%v is not supported: lines and columns must start at 1", k, v))
			return
		}
		args[k] = true
	}
	args["pathFormat"] = "path"
	raw, err := json.Marshal(args)
	if err != nil {
		b.respondError(env.Seq, env.Command, "encode initialize arguments: "+err.Error())
		return
	}
	b.mu.Lock()
	b.initArgs = raw
	b.initialized = true
	b.mu.Unlock()
	b.respond(env.Seq, env.Command, capabilities())
}

func (b *Bridge) onLaunch(ctx context.Context, env envelope) {
	b.relaunchMu.Lock()
	defer b.relaunchMu.Unlock()
	b.mu.Lock()
	if b.launching || b.launched {
		b.mu.Unlock()
		b.respondError(env.Seq, env.Command, "this debug session already launched a program; start a new session to debug another")
		return
	}
	if !b.initialized {
		b.initArgs = json.RawMessage(`{"adapterID":"kloop","pathFormat":"path","linesStartAt1":true,"columnsStartAt1":true}`)
	}
	b.launching = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.launching = false
		b.mu.Unlock()
	}()

	if err := b.launch(ctx, env.Arguments); err != nil {
		b.respondError(env.Seq, env.Command, err.Error())
		return
	}
	b.mu.Lock()
	b.launched = true
	cfg, t := b.cfg, b.target
	b.mu.Unlock()
	// Watching starts before the editor hears the launch succeeded, so a
	// save right after it is never missed.
	if cfg.RelaunchOnSave == nil || *cfg.RelaunchOnSave {
		b.watchForChanges(t)
	}
	b.respond(env.Seq, env.Command, nil)
}

func (b *Bridge) launch(ctx context.Context, arguments json.RawMessage) error {
	cfg, passThrough, err := parseLaunchConfig(arguments)
	if err != nil {
		return err
	}
	for _, u := range unknownLaunchKeys(arguments) {
		msg := fmt.Sprintf("kloop: launch attribute %q is not one kloop or Delve reads; it is ignored", u[0])
		if u[1] != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", u[1])
		}
		b.output("stderr", msg+"\n")
	}
	baseDir := b.opts.Dir
	if baseDir == "" {
		if baseDir, err = os.Getwd(); err != nil {
			return fmt.Errorf("find working directory: %w", err)
		}
	}
	t, err := resolveProgram(cfg.Program, baseDir)
	if err != nil {
		return err
	}
	var resolved map[string]string
	switch {
	case b.opts.ResolveEnv != nil:
		if resolved, err = b.opts.ResolveEnv(ctx, cfg); err != nil {
			return err
		}
	case cfg.Workload != "":
		return fmt.Errorf("workload %q: debugging against cluster traffic needs the kloop daemon, which this adapter could not reach; run `kloop intercept %s --debug` or remove \"workload\" to debug locally", cfg.Workload, cfg.Workload)
	}

	b.output("console", fmt.Sprintf("kloop: building %s with debug flags\n", t.display))
	elapsed, err := buildDebug(ctx, t, b.nextBinary, cfg.BuildFlags)
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			b.reportBuildError(be, false)
			return fmt.Errorf("build failed: %s (details in the debug console)", firstLine(be))
		}
		return err
	}
	if err := os.Rename(b.nextBinary, b.binary); err != nil {
		return fmt.Errorf("move the new binary into place: %w", err)
	}
	b.output("console", fmt.Sprintf("kloop: built in %s\n", elapsed.Round(time.Millisecond)))

	wd := processDir(cfg, baseDir, t)
	if info, err := os.Stat(wd); err != nil || !info.IsDir() {
		// exec would blame the binary ("fork/exec ...: no such file or directory").
		return fmt.Errorf("cwd %q is not a directory (looked at %s): fix \"cwd\" in the launch configuration or remove it to run in the package directory", cfg.Cwd, wd)
	}
	delveArgs, err := delveLaunchArgs(passThrough, b.binary, wd, cfg.Args, mergeEnv(resolved, cfg.Env))
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.cfg = cfg
	b.target = t
	b.wd = wd
	b.delveLaunch = delveArgs
	b.mu.Unlock()
	return b.startTarget(ctx)
}

// startTarget starts a fresh worker and has Delve launch the staged binary.
func (b *Bridge) startTarget(ctx context.Context) error {
	command := b.opts.WorkerCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the kloop executable to start a debug worker: %w", err)
		}
		command = []string{exe, "debug-worker"}
	}
	w, err := startWorker(b.ctx, command, os.Environ(), b.log)
	if err != nil {
		return err
	}
	wc := newWorkerConn(w)
	b.mu.Lock()
	old := b.wc
	b.wc = wc
	b.running = false
	initArgs, launchArgs := b.initArgs, b.delveLaunch
	b.mu.Unlock()
	if old != nil {
		old.w.stop(2 * time.Second)
	}
	go b.pumpOutput(w.stdout, "stdout")
	go b.pumpOutput(w.stderr, "stderr")
	go b.readWorker(wc)

	reply, err := wc.call(ctx, "initialize", initArgs)
	if err == nil && !reply.Success {
		err = fmt.Errorf("the debugger refused initialize: %s", reply.errorText())
	}
	if err != nil {
		w.stop(2 * time.Second)
		return err
	}
	reply, err = wc.call(ctx, "launch", launchArgs)
	if err == nil && !reply.Success {
		err = errors.New(explainLaunchFailure(reply.errorText()))
	}
	if err != nil {
		w.stop(2 * time.Second)
		return err
	}
	w.refreshDebuggees()
	return nil
}

// Relaunch rebuilds the program and restarts it under the same debug session. A build
// failure returns a *BuildError and leaves the running program untouched.
func (b *Bridge) Relaunch(ctx context.Context) (RelaunchResult, error) {
	b.relaunchMu.Lock()
	defer b.relaunchMu.Unlock()
	var res RelaunchResult
	b.mu.Lock()
	launched, closing, t, cfg, wc := b.launched, b.closing, b.target, b.cfg, b.wc
	b.mu.Unlock()
	if !launched {
		return res, ErrNotLaunched
	}
	if closing {
		return res, ErrSessionEnded
	}

	b.output("console", fmt.Sprintf("kloop: rebuilding %s\n", t.display))
	elapsed, err := buildDebug(ctx, t, b.nextBinary, cfg.BuildFlags)
	res.Build = elapsed
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			b.reportBuildError(be, wc != nil && wc.alive())
		}
		return res, err
	}
	if err := os.Rename(b.nextBinary, b.binary); err != nil {
		return res, fmt.Errorf("move the new binary into place: %w", err)
	}

	start := time.Now()
	b.setRelaunching(true)
	defer b.setRelaunching(false)
	restarted := false
	if wc != nil && wc.alive() {
		if err := b.restart(ctx, wc); err != nil {
			b.log.Warn("Delve restart failed; starting a new debugger", "err", err)
			b.output("console", "kloop: the debugger could not restart the program ("+err.Error()+"); starting a new debugger\n")
			wc.w.stop(2 * time.Second)
		} else {
			restarted = true
		}
	}
	if !restarted {
		if err := b.startTarget(ctx); err != nil {
			err = b.withWorkingDirHint(err)
			b.output("important", "kloop: relaunch failed: "+err.Error()+"\n")
			return res, fmt.Errorf("relaunch %s: %w", t.display, err)
		}
	}
	res.Restart = time.Since(start)
	b.output("console", fmt.Sprintf("kloop: relaunched (build %s, restart %s)\n",
		res.Build.Round(time.Millisecond), res.Restart.Round(time.Millisecond)))
	return res, nil
}

// restart asks Delve to relaunch the already-built binary. Success is the `initialized`
// event Delve sends after the new process is up; a failure is a second response to the
// same request, which Delve sends after having acknowledged it.
func (b *Bridge) restart(ctx context.Context, wc *workerConn) error {
	b.mu.Lock()
	launchArgs := b.delveLaunch
	initCh := make(chan struct{})
	b.initWaiters = append(b.initWaiters, initCh)
	b.mu.Unlock()
	args, err := restartArgs(launchArgs)
	if err != nil {
		return err
	}
	// Delve's restart kills the old process and then polls for its death in 200 ms
	// steps (pkg/proc/native wait), which was most of its cost; a process that is
	// already dead costs nothing. Pause first: a process dying under Delve's continue
	// while restart halts it races inside Delve.
	b.pauseForRestart(ctx, wc)
	killAndAwait(wc.w.refreshDebuggees(), 2*time.Second)
	b.mu.Lock()
	b.swallowStops = false
	b.running = false
	b.mu.Unlock()
	replies, err := wc.start("restart", args)
	if err != nil {
		return err
	}
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for {
		select {
		case r := <-replies:
			if !r.Success {
				return errors.New(r.errorText())
			}
		case <-initCh:
			wc.w.refreshDebuggees()
			return nil
		case <-wc.readerDone:
			return errors.New("the debug worker exited during restart")
		case <-timeout.C:
			return errors.New("no answer from the debugger within 2 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// withWorkingDirHint names the real cause when the program's working directory was
// deleted: exec then blames the binary ("fork/exec ...: no such file or directory").
func (b *Bridge) withWorkingDirHint(err error) error {
	b.mu.Lock()
	wd := b.wd
	b.mu.Unlock()
	if _, statErr := os.Stat(wd); wd != "" && errors.Is(statErr, os.ErrNotExist) {
		return fmt.Errorf("%w (the program's working directory %s no longer exists)", err, wd)
	}
	return err
}

// runCommands are the requests after whose success Delve resumes the program.
var runCommands = map[string]bool{
	"configurationDone": true, "continue": true, "next": true, "stepIn": true,
	"stepOut": true, "stepBack": true, "reverseContinue": true,
}

// pauseForRestart stops a running program through Delve and waits for the stop, which
// the editor does not see. A program already stopped is left alone.
func (b *Bridge) pauseForRestart(ctx context.Context, wc *workerConn) {
	b.mu.Lock()
	running := b.running
	if running {
		b.swallowStops = true
	}
	b.mu.Unlock()
	if !running {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := wc.call(ctx, "pause", nil); err != nil {
		b.log.Debug("pause before restart", "err", err)
		return
	}
	for ctx.Err() == nil {
		b.mu.Lock()
		running = b.running
		b.mu.Unlock()
		if !running {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (b *Bridge) setRunning(v bool) {
	b.mu.Lock()
	b.running = v
	b.mu.Unlock()
}

func (b *Bridge) setRelaunching(v bool) {
	b.mu.Lock()
	b.relaunching = v
	b.mu.Unlock()
}

func (b *Bridge) onDisconnect(env envelope, body []byte) {
	b.mu.Lock()
	b.closing = true
	wc := b.wc
	b.mu.Unlock()
	if wc != nil && wc.alive() {
		replies, err := wc.startRaw(body, env.Command)
		if err == nil {
			select {
			case r := <-replies:
				_, _ = b.editor.send(r.body, env.Seq, nil)
				wc.w.stop(5 * time.Second)
				return
			case <-wc.readerDone:
			case <-time.After(10 * time.Second):
			}
		}
		wc.w.stop(5 * time.Second)
	}
	b.respond(env.Seq, env.Command, nil)
}

// readWorker routes everything Delve sends until the worker's connection ends.
func (b *Bridge) readWorker(wc *workerConn) {
	defer close(wc.readerDone)
	fr := newFrameReader(wc.w.conn)
	for {
		body, err := fr.Read()
		if err != nil {
			break
		}
		env, err := parseEnvelope(body)
		if err != nil {
			b.log.Warn("malformed message from Delve", "err", err)
			continue
		}
		switch env.Type {
		case "response":
			if env.Success && runCommands[env.Command] {
				b.setRunning(true)
			}
			editorSeq, replies, ok := wc.take(env.RequestSeq)
			switch {
			case !ok:
				b.log.Debug("dropping duplicate response from Delve", "command", env.Command, "request_seq", env.RequestSeq)
			case replies != nil:
				select {
				case replies <- reply{envelope: env, body: body}:
				default:
				}
			default:
				if _, err := b.editor.send(body, editorSeq, nil); err != nil {
					b.log.Warn("send response to editor", "err", err)
				}
			}
		case "event":
			b.onWorkerEvent(wc, env, body)
		case "request":
			if _, err := b.editor.send(body, -1, func(seq int) { wc.addReverse(seq, env.Seq) }); err != nil {
				b.log.Warn("send reverse request to editor", "err", err)
			}
		}
	}
	b.mu.Lock()
	current := b.wc == wc
	quiet := b.closing || b.relaunching
	b.mu.Unlock()
	if current && !quiet {
		// Its program outlives it: without a debugger it would go on taking
		// traffic where no breakpoint can stop it, so it ends too.
		killProcessGroups(wc.w.refreshDebuggees())
		b.output("important", "kloop: the debugger process ended unexpectedly; save a change or restart to launch the program again\n")
	}
}

func (b *Bridge) onWorkerEvent(wc *workerConn, env envelope, body []byte) {
	b.mu.Lock()
	current := b.wc == wc
	closing, relaunching, endWithProgram := b.closing, b.relaunching, b.cfg.EndWithProgram
	var waiters []chan struct{}
	if env.Event == "initialized" {
		waiters, b.initWaiters = b.initWaiters, nil
	}
	b.mu.Unlock()
	if !current && !closing {
		return // an old worker being replaced
	}
	switch env.Event {
	case "initialized":
		if relaunching {
			// The editor may still show the old process paused at a breakpoint; say so
			// before `initialized` makes it resume the new one, so a new stop cannot
			// arrive ahead of this.
			b.event("continued", map[string]any{"threadId": 1, "allThreadsContinued": true})
		}
		defer func() {
			for _, ch := range waiters {
				close(ch)
			}
		}()
	case "terminated":
		b.setRunning(false)
		if relaunching {
			return
		}
		if !closing && !endWithProgram {
			// Keep the editor's session: the next save relaunches the program.
			b.output("console", "kloop: the program has ended; the debug session stays open, save a change or restart to launch it again\n")
			return
		}
	case "stopped":
		b.mu.Lock()
		b.running = false
		swallow := b.swallowStops
		b.mu.Unlock()
		if swallow {
			return
		}
	case "exited":
		b.setRunning(false)
		if relaunching {
			return
		}
	case "process":
		go wc.w.refreshDebuggees()
	}
	if _, err := b.editor.send(body, -1, nil); err != nil {
		b.log.Warn("send event to editor", "event", env.Event, "err", err)
	}
}

// pumpOutput turns the program's output into DAP output events, never splitting a
// UTF-8 sequence across two events.
func (b *Bridge) pumpOutput(r io.ReadCloser, category string) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	var carry []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := append(carry, buf[:n]...)
			cut := completeUTF8(chunk)
			carry = append([]byte(nil), chunk[cut:]...)
			if cut > 0 {
				b.output(category, string(chunk[:cut]))
			}
		}
		if err != nil {
			if len(carry) > 0 {
				b.output(category, string(carry))
			}
			return
		}
	}
}

// completeUTF8 returns the length of the longest prefix of p that does not end inside a
// multi-byte UTF-8 sequence.
func completeUTF8(p []byte) int {
	for i := 1; i <= utf8.UTFMax && i <= len(p); i++ {
		c := p[len(p)-i]
		if c < 0x80 {
			return len(p) // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(p[len(p)-i:]) {
				return len(p)
			}
			return len(p) - i
		}
	}
	return len(p)
}

func (b *Bridge) reportBuildError(be *BuildError, keptOld bool) {
	b.output("stderr", strings.TrimRight(be.Output, "\n")+"\n")
	msg := "kloop: build failed: " + firstLine(be)
	if keptOld {
		msg += " — the previous program keeps running under the debugger"
	}
	b.output("important", msg+"\n")
}

func firstLine(be *BuildError) string {
	if len(be.Diagnostics) > 0 {
		return be.Diagnostics[0].String()
	}
	line, _, _ := strings.Cut(strings.TrimSpace(be.Output), "\n")
	return line
}

// Processes reports the worker's pid and the debuggee pids, for the daemon's state file.
func (b *Bridge) Processes() (worker int, debuggees []int) {
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	if wc == nil || !wc.alive() {
		return 0, nil
	}
	return wc.w.cmd.Process.Pid, wc.w.refreshDebuggees()
}

func (b *Bridge) output(category, text string) {
	b.event("output", map[string]any{"category": category, "output": text})
}

func (b *Bridge) event(name string, body any) {
	msg := map[string]any{"seq": 0, "type": "event", "event": name}
	if body != nil {
		msg["body"] = body
	}
	b.sendToEditor(msg, -1)
}

func (b *Bridge) respond(requestSeq int, command string, body any) {
	msg := map[string]any{"seq": 0, "type": "response", "request_seq": requestSeq, "command": command, "success": true}
	if body != nil {
		msg["body"] = body
	}
	b.sendToEditor(msg, requestSeq)
}

func (b *Bridge) respondError(requestSeq int, command, message string) {
	msg := map[string]any{
		"seq": 0, "type": "response", "request_seq": requestSeq, "command": command, "success": false,
		"message": message,
		"body":    map[string]any{"error": map[string]any{"id": 3000, "format": message, "showUser": true}},
	}
	b.sendToEditor(msg, requestSeq)
}

func (b *Bridge) sendToEditor(msg map[string]any, requestSeq int) {
	raw, err := json.Marshal(msg)
	if err != nil {
		b.log.Error("encode message for editor", "err", err)
		return
	}
	if _, err := b.editor.send(raw, requestSeq, nil); err != nil {
		b.log.Debug("send to editor", "err", err)
	}
}

func orDefault(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}
