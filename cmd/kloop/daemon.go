//go:build !agentonly

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/engines"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

func newDaemonCmd() *cobra.Command {
	var idle time.Duration
	var maxBytes int
	var logFile string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the per-user daemon that editors and the CLI share",
		Long: `The daemon listens on a private unix socket ($XDG_RUNTIME_DIR/kloop/daemon.sock)
and serves every editor and CLI call of this user. Editors start it through
'kloop lsp'; running it by hand is for debugging. It exits after --idle-timeout
when no client is connected and no session holds a claim, intercept or process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := server.DefaultPaths()
			if err != nil {
				return err
			}
			// The log goes to a size-bounded file when one is named (the
			// forwarder names daemon.log); stderr stays for early crashes.
			logOut := cmd.ErrOrStderr()
			if logFile != "" {
				lf, err := server.OpenLogFile(logFile, server.DefaultLogMaxBytes)
				if err != nil {
					return err
				}
				defer lf.Close()
				logOut = lf
			}
			log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: logLevel()}))
			wait, err := debuggerWait()
			if err != nil {
				return err
			}
			err = server.Run(cmd.Context(), server.DaemonOptions{
				DebuggerWait:    wait,
				Paths:           paths,
				IdleTimeout:     idle,
				Logger:          log,
				Version:         kloopVersion(),
				MaxMessageBytes: maxBytes,
				Engines:         wireEngines(log),
			})
			if errors.Is(err, server.ErrAlreadyRunning) {
				return err
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&idle, "idle-timeout", envDuration("KLOOP_IDLE_TIMEOUT", server.DefaultIdleTimeout), "exit after this long with no client and nothing held")
	cmd.Flags().IntVar(&maxBytes, "max-message-bytes", server.DefaultMaxMessageBytes, "largest LSP message accepted")
	cmd.Flags().StringVar(&logFile, "log-file", os.Getenv("KLOOP_LOG_FILE"), "write the log to this file instead of stderr, rotated at 10 MiB to FILE.1")
	cmd.AddCommand(&cobra.Command{
		Use:   "stop",
		Short: "Stop the running daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := connectRunningDaemon(ctx)
			if errors.Is(err, errNoDaemon) {
				fmt.Fprintln(cmd.OutOrStdout(), "no kloop daemon is running")
				return nil
			}
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			// The daemon may close the connection before its answer is out:
			// an EOF here is the stop, not a failure.
			if err := c.Call(ctx, "kloop/stopDaemon", struct{}{}, nil); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "EOF") {
				return fmt.Errorf("stop the daemon: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "kloop daemon stopping")
			return nil
		},
	})
	cmd.AddCommand(newDaemonStatsCmd())
	return cmd
}

// errNoDaemon matches (errors.Is) connectRunningDaemon's error when no
// daemon answers.
var errNoDaemon = errors.New("no kloop daemon is running")

// connectRunningDaemon reaches the daemon that runs now, never starting
// one: stopping or inspecting a daemon must not start it.
func connectRunningDaemon(ctx context.Context) (*server.Client, error) {
	paths, err := server.DefaultPaths()
	if err != nil {
		return nil, err
	}
	c, err := server.Connect(ctx, server.ClientOptions{Dial: server.DialOptions{Paths: paths, NoStart: true}})
	if err != nil {
		return nil, fmt.Errorf("%w (%v); it starts with the first editor or kloop command", errNoDaemon, err)
	}
	return c, nil
}

// newDaemonStatsCmd prints the running daemon's resource use, for bug
// reports about a daemon that grows and for the soak test.
func newDaemonStatsCmd() *cobra.Command {
	var output, heapProfile string
	var gc bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the running daemon's goroutines, heap, memory and open files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return fmt.Errorf("-o %q: use json or text", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := connectRunningDaemon(ctx)
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			if heapProfile != "" {
				if heapProfile, err = filepath.Abs(heapProfile); err != nil {
					return err
				}
			}
			var st server.DaemonStats
			if err := c.Call(ctx, server.MethodDaemonStats, server.DaemonStatsParams{GC: gc, HeapProfile: heapProfile}, &st); err != nil {
				return fmt.Errorf("ask the daemon for its stats: %w", err)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "pid          %d\n", st.PID)
			fmt.Fprintf(w, "version      %s\n", st.Version)
			fmt.Fprintf(w, "goroutines   %d\n", st.Goroutines)
			fmt.Fprintf(w, "heap         %.1f MiB in %d objects\n", float64(st.HeapAllocBytes)/(1<<20), st.HeapObjects)
			fmt.Fprintf(w, "resident     %.1f MiB\n", float64(st.RSSBytes)/(1<<20))
			fmt.Fprintf(w, "open files   %d\n", st.OpenFiles)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&gc, "gc", false, "collect garbage first, so the heap is what is live")
	cmd.Flags().StringVar(&heapProfile, "heap-profile", "", "also write the daemon's heap profile to this file (for go tool pprof)")
	return cmd
}

func newLSPCmd() *cobra.Command {
	var standalone bool
	cmd := &cobra.Command{
		Use:   "lsp [--stdio]",
		Short: "Serve the Language Server Protocol on stdio (what editors spawn)",
		Long: `By default 'kloop lsp' relays stdio to the shared per-user daemon, starting it
when none answers, so every editor and the CLI see one state. With --standalone
it serves in this process instead. A trailing --stdio (added by
vscode-languageclient) is accepted and ignored: stdio is the only transport.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if standalone {
				log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel()}))
				wait, err := debuggerWait()
				if err != nil {
					return err
				}
				mgr := session.NewManager(session.Options{Logger: log, Engines: wireEngines(log), DebuggerWait: wait})
				defer mgr.Close(context.WithoutCancel(cmd.Context()))
				return server.ServeConn(cmd.Context(), stdio{}, server.ConnOptions{Manager: mgr, Logger: log, Version: kloopVersion()})
			}
			paths, err := server.DefaultPaths()
			if err != nil {
				return err
			}
			return server.Forward(cmd.Context(), os.Stdin, os.Stdout, server.DialOptions{Paths: paths})
		},
	}
	cmd.Flags().BoolVar(&standalone, "standalone", false, "serve in this process instead of through the shared daemon")
	cmd.Flags().Bool("stdio", true, "use stdio (the only transport; accepted for vscode-languageclient)")
	return cmd
}

// stdio joins the process's stdin and stdout into one connection.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error {
	return errors.Join(os.Stdin.Close(), os.Stdout.Close())
}

var _ io.ReadWriteCloser = stdio{}

func logLevel() slog.Level {
	if os.Getenv("KLOOP_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// debuggerWait reads KLOOP_DEBUGGER_WAIT: how long an intercept made for
// debugging waits for a debug session before kloop warns that nothing
// answers its traffic.
func debuggerWait() (time.Duration, error) {
	v := os.Getenv("KLOOP_DEBUGGER_WAIT")
	if v == "" {
		return session.DefaultDebuggerWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d == 0 {
		return 0, fmt.Errorf("KLOOP_DEBUGGER_WAIT=%q: want a duration such as 5s or 30s (a negative one, e.g. -1s, never warns); unset it for the default %s", v, session.DefaultDebuggerWait)
	}
	return d, nil
}

// wireEngines wires the cluster work of the daemon's sessions.
func wireEngines(log *slog.Logger) session.Engines {
	// The default agent image is tagged with this kloop's version.
	intercept.Version = kloopVersion()
	// KLOOP_AGENT_IMAGE overrides every other setting of the agent image.
	iopts := engines.InterceptsOptions{Image: os.Getenv("KLOOP_AGENT_IMAGE"), Logger: log}
	paths, perr := server.DefaultPaths()
	if perr == nil {
		var err error
		if iopts.HolderID, err = engines.HolderID(paths.State); err != nil {
			// user@host alone still works; only installations that share
			// it could then adopt each other's intercepts.
			log.Warn("no holder ID; intercepts are held as user@host alone", "err", err)
		}
	}
	intercepts := engines.NewIntercepts(iopts)
	e := session.Engines{
		Intercepts: intercepts,
		Agents:     intercepts,
		Workloads:  intercepts,
		Env:        engines.Env{},
		Doctor:     engines.Doctor{Image: iopts.Image},
	}
	if perr != nil {
		log.Warn("claim pools unavailable", "err", perr)
	} else {
		// KLOOP_CLAIM_LEASE shortens leases (and renewals) for tests.
		e.Claims = engines.NewClaims(engines.ClaimsOptions{Dir: filepath.Join(paths.State, "claims"), Logger: log, LeaseDuration: envDuration("KLOOP_CLAIM_LEASE", 0)})
	}
	return e
}
