package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/debugadapter"
)

func newDAPCmd() *cobra.Command {
	var listen string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "dap",
		Short: "Debug adapter (DAP) for editors: builds, runs and relaunches the program under Delve",
		Long: `Speaks the Debug Adapter Protocol on stdio, or with --listen on a loopback TCP port
(printed as "DAP server listening at: ADDR") for one editor connection.
The debug session survives every rebuild: on relaunch the program is built first and
only a good build replaces the running one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			icpt := &daemonIntercept{}
			opts := debugadapter.Options{
				Logger:     slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})),
				ResolveEnv: icpt.resolveEnv,
			}
			// The intercept this session made ends with it, as stopping a
			// debug session in vscode-go ends what it started.
			defer icpt.leave(context.WithoutCancel(cmd.Context()))
			if listen == "" {
				return debugadapter.New(opts).Serve(cmd.Context(), stdioConn{in: os.Stdin, out: os.Stdout})
			}
			return serveDAPOnce(cmd.Context(), listen, opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "serve one DAP client on this loopback address (e.g. 127.0.0.1:0) instead of stdio")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log the adapter's own diagnostics to stderr")
	return cmd
}

// serveDAPOnce accepts a single editor connection, like `dlv dap`, so the process ends
// with the session and never lingers.
func serveDAPOnce(ctx context.Context, addr string, opts debugadapter.Options, out io.Writer) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT, e.g. 127.0.0.1:0: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: the debug adapter only listens on loopback (127.0.0.1, ::1 or localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	fmt.Fprintf(out, "DAP server listening at: %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	conn, err := ln.Accept()
	ln.Close()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("accept DAP client: %w", err)
	}
	return debugadapter.New(opts).Serve(ctx, conn)
}

func newDebugWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "debug-worker",
		Short:  "Hosts Delve for one debug target (started by `kloop dap`, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return debugadapter.RunWorker(cmd.Context())
		},
	}
}

// stdioConn joins stdin and stdout into the connection the bridge serves.
type stdioConn struct {
	in  *os.File
	out *os.File
}

func (c stdioConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c stdioConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c stdioConn) Close() error {
	return errors.Join(c.in.Close(), c.out.Close())
}
