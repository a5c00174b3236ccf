//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

func newRequestsCmd() *cobra.Command {
	var f sessionFlags
	var args session.RequestsArgs
	cmd := &cobra.Command{
		Use:   "requests [WORKLOAD]",
		Short: "List the last HTTP requests intercepted traffic brought to your process (in memory only; credentials masked)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			if len(pos) == 1 {
				args.Workload = pos[0]
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Requests.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				if len(res.Requests) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "no requests recorded yet: they are recorded while a workload is intercepted (`kloop intercept WORKLOAD`)")
					return nil
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTIME\tWORKLOAD\tREQUEST\tSTATUS\tTOOK\tPID")
				for _, e := range res.Requests {
					status := "-"
					if e.Response != nil {
						status = strconv.Itoa(e.Response.Status)
					}
					if e.Mirrored {
						// The caller got the cluster's answer; this
						// process's was discarded.
						status += fmt.Sprintf(" (mirror; cluster %d)", e.ClusterStatus)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s %s\t%s\t%s\t%d\n", e.ID, e.Time.Local().Format("15:04:05"), e.Workload,
						e.Method, e.Target, status, e.Duration.Round(100*time.Microsecond), e.Pid)
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd, true)
	cmd.AddCommand(newExportCmd())
	return cmd
}

func newExportCmd() *cobra.Command {
	var f sessionFlags
	var goTest bool
	var file string
	cmd := &cobra.Command{
		Use:   "export ID --go-test [-o FILE]",
		Short: "Write a recorded request as a Go test that runs your program without a cluster, its outbound calls answered as recorded",
		Long: `Write recorded request ID (from ` + "`kloop requests`" + `) as a Go test: it builds the main
package it sits in, starts the program with the env it had under kloop (on a free
port), answers the calls the program made through kloop's outbound proxy as the
cluster answered them, sends the request and checks status, headers and body
(JSON-aware) against the recorded answer. Without -o the file is
kloop_request_ID_test.go in the directory of the intercept's program.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			id, err := strconv.Atoi(pos[0])
			if err != nil || id <= 0 {
				return fmt.Errorf("request ID %q: want a number from `kloop requests`", pos[0])
			}
			if !goTest {
				return fmt.Errorf("say what to write: --go-test (the only format so far)")
			}
			args := session.ExportArgs{ID: id, Format: "go-test"}
			if file != "" {
				// The daemon resolves relative paths against the
				// workspace; the user means the current directory.
				abs, err := filepath.Abs(file)
				if err != nil {
					return fmt.Errorf("-o %s: %w", file, err)
				}
				args.File = abs
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Export.Call(ctx, c, args)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, %d outbound calls stubbed; run it with `go test -run %s`\n", res.File, res.Test, res.Outbound, res.Test)
				if res.Overlapped {
					fmt.Fprintln(cmd.ErrOrStderr(), "note: other requests were served at the same time; some stubbed calls may be theirs (see the file's comment)")
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&goTest, "go-test", false, "write a Go test (net/http/httptest)")
	cmd.Flags().StringVarP(&file, "output", "o", "", "the test file to write (a name ending in _test.go, in the program's main package directory)")
	f.register(cmd, false)
	return cmd
}

func newReplayCmd() *cobra.Command {
	var f sessionFlags
	var args session.ReplayArgs
	var last bool
	cmd := &cobra.Command{
		Use:   "replay [ID | --last]",
		Short: "Send a recorded request again to your process (never to the cluster) and compare the answer with the recorded one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			switch {
			case len(pos) == 1 && last:
				return fmt.Errorf("give a request ID or --last, not both")
			case len(pos) == 1:
				id, err := strconv.Atoi(pos[0])
				if err != nil || id <= 0 {
					return fmt.Errorf("request ID %q: want a number from `kloop requests`", pos[0])
				}
				args.ID = id
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Replay.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				w := cmd.OutOrStdout()
				was := res.Request.Response
				fmt.Fprintf(w, "replayed #%d %s %s to pid %d: %d in %s", res.Request.ID, res.Request.Method, res.Request.Target,
					res.Pid, res.Response.Status, res.Duration.Round(100*time.Microsecond))
				if was != nil {
					fmt.Fprintf(w, " (recorded: %d from pid %d)", was.Status, res.Request.Pid)
				}
				fmt.Fprintln(w)
				if res.Same {
					fmt.Fprintln(w, "same answer as recorded")
					return nil
				}
				for _, d := range res.Diff {
					fmt.Fprintln(w, "  "+d)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&last, "last", false, "the last recorded request (the default)")
	cmd.Flags().StringVar(&args.Workload, "workload", "", "the last request of this workload")
	cmd.Flags().BoolVar(&args.Yes, "yes", false, "send a request that may change data (POST, PUT, PATCH, DELETE) again")
	f.register(cmd, true)
	return cmd
}
