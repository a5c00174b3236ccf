package debugadapter

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
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
)

// Options configure a Bridge.
type Options struct {
	// Manager owns the sessions: the program is run by the session of the workspace
	// Dir belongs to. Required.
	Manager *session.Manager
	// Dir resolves a relative "program" or "cwd": the editor's working directory, as
	// `kloop dap` reported it.
	Dir string
	// Env is the editor's environment (from `kloop dap`), under the pod's env and the
	// launch configuration's; nil means the daemon's.
	Env []string
	// WorkerCommand starts a debug worker; default: this executable with "debug-worker".
	WorkerCommand []string
	// Logger receives the bridge's own diagnostics; default: discarded.
	Logger *slog.Logger
}

// ErrSessionEnded is returned by a relaunch after the editor ended the debug session.
var ErrSessionEnded = errors.New("the debug session has ended")

// Bridge is one editor debug session: it owns the editor's DAP connection and the debug
// worker behind it, which it restarts or replaces as the session's loop rebuilds the
// program.
type Bridge struct {
	opts Options
	log  *slog.Logger

	editor *frameWriter
	ctx    context.Context // the session's; workers die with it

	launchMu sync.Mutex // one launch at a time

	mu          sync.Mutex
	initArgs    json.RawMessage
	initialized bool
	launching   bool
	launched    bool
	cfg         LaunchConfig
	passThrough map[string]json.RawMessage
	dbg         *session.DebugSession
	proc        *debugProcess
	wc          *workerConn
	closing     bool
	relaunching bool
	// configured is whether the editor sent configurationDone: after a relaunch the
	// bridge sends it itself only then, so stopOnEntry-like flows stay the editor's.
	configured bool
	// running is whether Delve is resuming the program (it answered a run command and
	// has not reported a stop since); readWorker keeps it in wire order.
	running bool
	// ownInit marks the next `initialized` as the bridge's own (after a restart or a
	// new worker): the bridge sets the breakpoints itself and the editor never sees it.
	ownInit bool
	// swallowStops hides the stop the bridge causes itself by pausing before a restart.
	swallowStops bool
	initWaiters  []chan struct{}
	bps          breakpoints
	// relaunchesSeen is the loop's relaunch count last told to the console.
	relaunchesSeen int
	// editorConfigured is closed when the editor's configurationDone after a relaunch's
	// `initialized` was answered; ignoresInitialized is learnt when one never comes.
	editorConfigured   chan struct{}
	ignoresInitialized bool
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
// breaks or ctx ends; then the program is stopped and what the session made for it (an
// intercept) undone. It returns nil when the editor ended the session (disconnect
// request or EOF).
func (b *Bridge) Serve(ctx context.Context, conn io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ctx = ctx
	b.editor = &frameWriter{w: conn}
	defer b.end()
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
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) {
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

// end stops the program and undoes what the session made for it. A launch still in
// progress is waited for, so its intercept is not left behind.
func (b *Bridge) end() {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	b.launchMu.Lock()
	b.mu.Lock()
	dbg := b.dbg
	b.dbg = nil
	b.mu.Unlock()
	b.launchMu.Unlock()
	if dbg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 2*time.Minute)
	defer cancel()
	if dbg.Workload() != "" {
		b.output("console", "kloop: ending the debug session of "+dbg.Workload()+"\n")
	}
	if err := dbg.End(ctx, session.NoProgress{}); err != nil {
		b.log.Warn("end debug session", "err", err)
		msg := "kloop: ending the debug session: " + err.Error()
		if w := dbg.Workload(); w != "" {
			msg += fmt.Sprintf(" (run `kloop leave %s` to restore it)", w)
		}
		b.output("important", msg+"\n")
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
		go b.onRelaunch(ctx, env)
	case "disconnect":
		b.onDisconnect(env)
		return true
	case "configurationDone":
		b.onConfigurationDone(env, body)
	case "setBreakpoints", "setFunctionBreakpoints", "setExceptionBreakpoints", "setInstructionBreakpoints":
		b.forward(env, body, b.bps.remember(env.Command, env.Arguments))
	default:
		b.forward(env, body, nil)
	}
	return false
}

// onConfigurationDone forwards the editor's configurationDone when it resumes a
// program: the first launch's, and the one a relaunch waits for after telling the editor
// `initialized`. Any other (late, after the bridge resumed the program itself) is
// answered here: Delve would queue it until the program next stops.
func (b *Bridge) onConfigurationDone(env envelope, body []byte) {
	b.mu.Lock()
	first := !b.configured
	b.configured = true
	awaited := b.editorConfigured
	b.editorConfigured = nil
	b.mu.Unlock()
	switch {
	case first:
		b.forward(env, body, nil)
	case awaited != nil:
		b.forward(env, body, func([]byte) { close(awaited) })
	default:
		b.respond(env.Seq, env.Command, nil)
	}
}

// forward sends an editor request to Delve; the answer comes back through readWorker,
// seen first by observe when set.
func (b *Bridge) forward(env envelope, body []byte, observe func([]byte)) {
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	if wc == nil || !wc.alive() {
		if observe != nil {
			// Kept for the next process; the editor learns the outcome then.
			b.respond(env.Seq, env.Command, map[string]any{"breakpoints": []any{}})
			return
		}
		b.respondError(env.Seq, env.Command, fmt.Sprintf("%q needs a running program: the launch has not finished, or the program is being rebuilt", env.Command))
		return
	}
	if err := wc.forward(body, env.Seq, env.Command, observe); err != nil {
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
	b.launchMu.Lock()
	defer b.launchMu.Unlock()
	b.mu.Lock()
	if b.launching || b.launched {
		b.mu.Unlock()
		b.respondError(env.Seq, env.Command, "this debug session already launched a program; start a new session to debug another")
		return
	}
	if b.closing {
		b.mu.Unlock()
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

	began := time.Now()
	dbg, err := b.launch(ctx, env.Arguments)
	if err != nil {
		b.respondError(env.Seq, env.Command, err.Error())
		return
	}
	b.mu.Lock()
	b.launched = true
	b.dbg = dbg
	b.mu.Unlock()
	// Where a slow first launch went (a cold build cache, a slow rollout), in the
	// console and, for tools and benchmarks, in the response body.
	tm := dbg.Timings()
	total := time.Since(began)
	msg := fmt.Sprintf("kloop: launched in %s (", total.Round(time.Millisecond))
	if dbg.Workload() != "" {
		msg += fmt.Sprintf("intercept %s, ", tm.Intercept.Round(time.Millisecond))
	}
	b.output("console", msg+fmt.Sprintf("build %s, debugger %s)\n", tm.Build.Round(time.Millisecond), tm.Start.Round(time.Millisecond)))
	b.respond(env.Seq, env.Command, map[string]any{"kloop": map[string]int64{
		"totalMillis": total.Milliseconds(), "interceptMillis": tm.Intercept.Milliseconds(),
		"buildMillis": tm.Build.Milliseconds(), "debuggerMillis": tm.Start.Milliseconds(),
	}})
}

// launch hands the program to the session of the editor's workspace, which builds it
// with debug flags, intercepts the workload when one is named, and starts it through
// the bridge's debugProcess.
func (b *Bridge) launch(ctx context.Context, arguments json.RawMessage) (*session.DebugSession, error) {
	cfg, passThrough, err := parseLaunchConfig(arguments)
	if err != nil {
		return nil, err
	}
	for _, u := range unknownLaunchKeys(arguments) {
		msg := fmt.Sprintf("kloop: launch attribute %q is not one kloop or Delve reads; it is ignored", u[0])
		if u[1] != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", u[1])
		}
		b.output("stderr", msg+"\n")
	}
	if b.opts.Manager == nil {
		return nil, errors.New("the debug adapter runs without the kloop daemon: run `kloop dap`, which reaches it")
	}
	baseDir := b.opts.Dir
	if baseDir == "" {
		if baseDir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("find working directory: %w", err)
		}
	}
	t, err := resolveProgram(cfg.Program, baseDir)
	if err != nil {
		return nil, err
	}
	// The program runs in "cwd", else in its package directory (what vscode-go does).
	wd := t.dir
	switch {
	case filepath.IsAbs(cfg.Cwd):
		wd = cfg.Cwd
	case cfg.Cwd != "":
		wd = filepath.Join(baseDir, cfg.Cwd)
	}
	if info, err := os.Stat(wd); err != nil || !info.IsDir() {
		// exec would blame the binary ("fork/exec ...: no such file or directory").
		return nil, fmt.Errorf("cwd %q is not a directory (looked at %s): fix \"cwd\" in the launch configuration or remove it to run in the package directory", cfg.Cwd, wd)
	}
	if cfg.Workload != "" {
		if _, err := workload.Parse(cfg.Workload); err != nil {
			return nil, fmt.Errorf("launch configuration \"workload\": %w", err)
		}
	}
	b.mu.Lock()
	b.cfg = cfg
	b.passThrough = passThrough
	b.mu.Unlock()

	// The workspace is the editor's folder: an LSP client open on it sees the same
	// session (diagnostics of a failed build, kloop/status).
	sess := b.opts.Manager.Open(session.FindRoot(baseDir))
	args := session.DebugArgs{
		Workload: cfg.Workload, Port: cfg.Port, Header: cfg.Header,
		Path: cfg.Path, PathRegex: cfg.PathRegex, Method: cfg.Method, Match: cfg.Match,
		Dir: t.dir, Package: t.pkg, Display: t.display,
		Args: cfg.Args, Cwd: wd, Env: cfg.Env, BaseEnv: b.opts.Env, BuildFlags: cfg.BuildFlags,
		RelaunchOnSave: cfg.RelaunchOnSave == nil || *cfg.RelaunchOnSave,
		ReplayOnSave:   cfg.ReplayOnSave,
		Traffic:        cfg.Traffic,
		Outbound:       cfg.Outbound,
	}
	if cfg.Workload != "" {
		b.output("console", fmt.Sprintf("kloop: intercepting %s and building %s with debug flags\n", cfg.Workload, t.display))
	} else {
		b.output("console", fmt.Sprintf("kloop: building %s with debug flags\n", t.display))
	}
	dbg, err := sess.Debug(ctx, args, session.DebugHooks{NewProcess: b.newProcess, OnStatus: b.onLoopStatus}, consoleProgress{b})
	var se *session.StartError
	switch {
	case errors.As(err, &se) && se.BuildFailed:
		// The compiler's output is in the debug console and, as diagnostics, in
		// every LSP client of the workspace.
		return nil, fmt.Errorf("build failed: %s (details in the debug console)", firstDiagnostic(se.Reason))
	case errors.As(err, &se):
		return nil, errors.New(se.Reason)
	case err != nil:
		return nil, err
	}
	return dbg, nil
}

// consoleProgress shows the session's progress (intercept, build) in the debug console.
type consoleProgress struct{ b *Bridge }

func (p consoleProgress) Report(message string, _ int) {
	p.b.output("console", "kloop: "+message+"\n")
}

// onLoopStatus tells the debug console what the session's loop does with each save.
func (b *Bridge) onLoopStatus(st relaunch.Status) {
	switch st.State {
	case relaunch.StateBuilding:
		if st.Builds > 0 {
			b.output("console", "kloop: rebuilding\n")
		}
	case relaunch.StateRunning:
		if st.Relaunches > 0 {
			b.noteRelaunch(st)
		}
	case relaunch.StateBuildFailed:
		msg := "kloop: build failed: " + strings.TrimSpace(st.LastError)
		if st.Launches > 0 {
			msg += "\nkloop: the previous program keeps running under the debugger"
		}
		b.output("important", msg+"\n")
	}
}

// noteRelaunch says once per relaunch, in the debug console, what it cost.
func (b *Bridge) noteRelaunch(st relaunch.Status) {
	b.mu.Lock()
	seen := b.relaunchesSeen
	b.relaunchesSeen = st.Relaunches
	b.mu.Unlock()
	if st.Relaunches > seen {
		b.output("console", fmt.Sprintf("kloop: relaunched (build %s, save to serving %s)\n",
			st.LastBuild.Round(time.Millisecond), st.LastRelaunch.Round(time.Millisecond)))
	}
}

// onRelaunch serves the editor's restart (and kloop/relaunch): build, then relaunch
// under the same session.
func (b *Bridge) onRelaunch(ctx context.Context, env envelope) {
	b.mu.Lock()
	dbg, closing := b.dbg, b.closing
	b.mu.Unlock()
	switch {
	case closing:
		b.respondError(env.Seq, env.Command, ErrSessionEnded.Error())
		return
	case dbg == nil:
		b.respondError(env.Seq, env.Command, "no program is being debugged yet: the editor has not sent a successful launch request")
		return
	}
	st, err := dbg.Relaunch(ctx)
	if err != nil {
		b.respondError(env.Seq, env.Command, "relaunch: "+err.Error())
		return
	}
	if st.State == relaunch.StateBuildFailed || st.LastError != "" {
		b.respondError(env.Seq, env.Command, "relaunch: "+firstDiagnostic(st.LastError))
		return
	}
	b.respond(env.Seq, env.Command, map[string]any{
		"buildMillis":    st.LastBuild.Milliseconds(),
		"relaunchMillis": st.LastRelaunch.Milliseconds(),
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// firstDiagnostic is the first file:line message of a build's output, else its first
// line: the line worth a launch error.
func firstDiagnostic(output string) string {
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimSpace(line)
		if file, _, ok := strings.Cut(line, ".go:"); ok && file != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return firstLine(output)
}

// onDisconnect ends the session: the program stops and what was made for it is undone
// before the editor hears the answer, so a session started right after finds the
// workload restored.
func (b *Bridge) onDisconnect(env envelope) {
	b.end()
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
				b.notePaused(false)
			}
			pending, ok := wc.take(env.RequestSeq)
			switch {
			case !ok:
				b.log.Debug("dropping duplicate response from Delve", "command", env.Command, "request_seq", env.RequestSeq)
			case pending.replies != nil:
				select {
				case pending.replies <- reply{envelope: env, body: body}:
				default:
				}
			default:
				if pending.observe != nil {
					pending.observe(body)
				}
				if _, err := b.editor.send(body, pending.editorSeq, nil); err != nil {
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
	proc := b.proc
	b.mu.Unlock()
	if current && !quiet {
		// Its program outlives it: without a debugger it would go on taking
		// traffic where no breakpoint can stop it, so it ends too.
		killProcessGroups(wc.w.refreshDebuggees())
		b.output("important", "kloop: the debugger process ended unexpectedly; save a change or restart to launch the program again\n")
		if proc != nil {
			proc.exited("the debugger process ended unexpectedly")
		}
	}
}

func (b *Bridge) onWorkerEvent(wc *workerConn, env envelope, body []byte) {
	b.mu.Lock()
	current := b.wc == wc
	closing, relaunching, endWithProgram, proc := b.closing, b.relaunching, b.cfg.EndWithProgram, b.proc
	var waiters []chan struct{}
	own := false
	if env.Event == "initialized" {
		own = b.ownInit
		b.ownInit = false
		if own {
			waiters, b.initWaiters = b.initWaiters, nil
		}
	}
	b.mu.Unlock()
	if !current && !closing {
		return // an old worker being replaced
	}
	switch env.Event {
	case "initialized":
		if own {
			// The bridge's own (a restart or a new worker): it sets the breakpoints
			// and resumes the program itself.
			for _, ch := range waiters {
				close(ch)
			}
			return
		}
	case "terminated":
		b.setRunning(false)
		b.notePaused(false)
		if relaunching {
			return
		}
		if proc != nil && !closing {
			proc.exited("the program ended under the debugger; save a change or restart to launch it again")
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
		b.notePaused(true)
	case "continued":
		b.notePaused(false)
	case "exited":
		b.setRunning(false)
		b.notePaused(false)
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
// UTF-8 sequence across two events, and passes its lines to the session (the editors'
// output channels and the daemon log).
func (b *Bridge) pumpOutput(r io.ReadCloser, category string, p *debugProcess) {
	defer r.Close()
	stream := run.Stdout
	if category == "stderr" {
		stream = run.Stderr
	}
	buf := make([]byte, 32<<10)
	var carry, line []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := append(carry, buf[:n]...)
			cut := completeUTF8(chunk)
			carry = append([]byte(nil), chunk[cut:]...)
			if cut > 0 {
				b.output(category, string(chunk[:cut]))
				line = p.lines(stream, append(line, chunk[:cut]...))
			}
		}
		if err != nil {
			if len(carry) > 0 {
				b.output(category, string(carry))
				line = append(line, carry...)
			}
			if len(line) > 0 && p.spec.OnLine != nil {
				p.spec.OnLine(stream, string(line))
			}
			return
		}
	}
}

// lines hands the complete lines of buf to the session and returns the rest.
func (p *debugProcess) lines(stream run.Stream, buf []byte) []byte {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > maxLine {
				// A line without end: pass it on in pieces rather than hold it all.
				i = maxLine
			} else {
				return buf
			}
		}
		if p.spec.OnLine != nil {
			p.spec.OnLine(stream, strings.TrimSuffix(string(buf[:i]), "\r"))
		}
		if i < len(buf) && buf[i] == '\n' {
			i++
		}
		buf = buf[i:]
	}
}

// maxLine bounds what one program output line holds back.
const maxLine = 64 << 10

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
