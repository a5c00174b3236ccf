//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/debugadapter"
	"github.com/kloop/kloop/server"
)

func newDAPCmd() *cobra.Command {
	var listen string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "dap",
		Short: "Debug adapter (DAP) for editors: builds, runs and relaunches the program under Delve",
		Long: `Speaks the Debug Adapter Protocol on stdio, or with --listen on a loopback TCP port
(printed as "DAP server listening at: ADDR") for one editor connection of your own user.
It forwards to the kloop daemon (starting it when none runs), which owns the debug
session: the same build, watcher, relaunch gate and state as ` + "`kloop intercept --program`" + `,
so the editor, the terminal and other editors see one state. The debug session survives
every rebuild: on relaunch the program is built first and only a good build replaces
the running one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := server.DefaultPaths()
			if err != nil {
				return err
			}
			dir, err := os.Getwd()
			if err != nil {
				return fmt.Errorf("find the working directory: %w", err)
			}
			opts := server.DialOptions{Paths: paths}
			hello := server.DAPHello{Dir: dir, Env: os.Environ()}
			if listen == "" {
				return server.ForwardDAP(cmd.Context(), os.Stdin, os.Stdout, opts, hello)
			}
			return serveDAPOnce(cmd.Context(), listen, cmd.OutOrStdout(), cmd.ErrOrStderr(), func(c net.Conn) error {
				return server.ForwardDAP(cmd.Context(), c, c, opts, hello)
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "serve one DAP client of your own user on this loopback address (e.g. 127.0.0.1:0) instead of stdio")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "accepted for compatibility: the debug session's log is the daemon's (KLOOP_DEBUG=1 for detail)")
	return cmd
}

// serveDAPOnce accepts a single editor connection of this user, like `dlv dap`, so the
// process ends with the session and never lingers. A connection from another user is
// told why and refused, and the next one is awaited: a loopback port is open to every
// local user, and the session would run programs as this one.
func serveDAPOnce(ctx context.Context, addr string, out, errOut io.Writer, serve func(net.Conn) error) error {
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
	defer ln.Close()
	fmt.Fprintf(out, "DAP server listening at: %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept DAP client: %w", err)
		}
		if err := server.CheckLoopbackPeer(conn); err != nil {
			fmt.Fprintln(errOut, "kloop dap:", err)
			refuseDAP(conn, err)
			continue
		}
		ln.Close()
		defer conn.Close()
		return serve(conn)
	}
}

// refuseDAP tells a refused client why, as DAP output and terminated events, and hangs up.
func refuseDAP(conn net.Conn, why error) {
	defer conn.Close()
	for _, ev := range []map[string]any{
		{"seq": 1, "type": "event", "event": "output", "body": map[string]any{"category": "important", "output": why.Error() + "\n"}},
		{"seq": 2, "type": "event", "event": "terminated"},
	} {
		body, err := json.Marshal(ev)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(conn, "Content-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			return
		}
	}
}

func newDebugWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "debug-worker",
		Short:  "Hosts Delve for one debug target (started by the kloop daemon, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return debugadapter.RunWorker(cmd.Context())
		},
	}
}
