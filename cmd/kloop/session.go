//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

// sessionFlags are shared by every command that acts on a workspace session.
type sessionFlags struct {
	workspace string
	output    string
	// onOutput and onStatus, when set, receive the daemon's kloop/output
	// and kloop/status notifications while the command runs.
	onOutput func(session.OutputLine)
	onStatus func(session.Status)
	// line: the command also offers -o line, one line for an IDE's tool
	// window or a shell prompt.
	line bool
}

func (f *sessionFlags) register(cmd *cobra.Command, read bool) {
	cmd.Flags().StringVarP(&f.workspace, "workspace", "w", "", "workspace folder (default: nearest parent with .kloop.yaml, go.mod or .git)")
	if read {
		help := "output format: text or json"
		if f.line {
			help = "output format: text, json or line (one line, for an IDE tool window or a prompt)"
		}
		cmd.Flags().StringVarP(&f.output, "output", "o", "text", help)
	}
}

// run connects to the daemon (starting it if needed) for the workspace and
// calls fn. Progress goes to stderr as a single updating line.
func (f *sessionFlags) run(cmd *cobra.Command, fn func(ctx context.Context, c *server.Client) error) error {
	switch {
	case f.output == "line" && f.line:
	case f.output == "line":
		return fmt.Errorf("--output line: only kloop status prints one line; want text or json here")
	case f.output != "" && f.output != "text" && f.output != "json":
		if f.line {
			return fmt.Errorf("--output %q: want text, json or line", f.output)
		}
		return fmt.Errorf("--output %q: want text or json", f.output)
	}
	ws := f.workspace
	if ws == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("find the workspace: %w", err)
		}
		ws = session.FindRoot(wd)
	}
	abs, err := filepath.Abs(ws)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", ws, err)
	}
	paths, err := server.DefaultPaths()
	if err != nil {
		return err
	}
	pl := newProgressLine(cmd.ErrOrStderr())
	ctx := cmd.Context()
	// The connection outlives Ctrl-C (which cancels ctx): a command may
	// still have to tell the daemon to clean up, as intercept does on exit.
	c, err := server.Connect(context.WithoutCancel(ctx), server.ClientOptions{
		Dial:       server.DialOptions{Paths: paths},
		Workspace:  abs,
		OnProgress: pl.update,
		OnMessage:  func(msg string) { pl.message(msg) },
		OnOutput:   f.onOutput,
		OnStatus:   f.onStatus,
	})
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	err = fn(ctx, c)
	pl.finish()
	return err
}

func newStatusCmd() *cobra.Command {
	f := sessionFlags{line: true}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the workspace's claim, intercepts and process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				st, err := command.Status.Call(ctx, c, command.NoArgs{})
				if err != nil {
					return err
				}
				return printStatus(cmd.OutOrStdout(), f.output, st)
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func printStatus(w io.Writer, format string, st session.Status) error {
	switch format {
	case "json":
		return writeJSON(w, st)
	case "line":
		_, err := fmt.Fprintln(w, statusLine(st))
		return err
	}
	fmt.Fprintf(w, "workspace  %s\n", st.Workspace)
	if st.Claim == nil {
		fmt.Fprintln(w, "claim      none (kloop claim)")
	} else {
		fmt.Fprintf(w, "claim      %s of pool %s until %s (kubeconfig %s)\n", st.Claim.Slot, st.Claim.Pool, st.Claim.Until.Local().Format(time.Kitchen), st.Claim.Kubeconfig)
	}
	if len(st.Intercepts) == 0 {
		fmt.Fprintln(w, "intercepts none (kloop intercept WORKLOAD)")
	}
	for _, in := range st.Intercepts {
		switch {
		case in.Traffic == string(session.TrafficNone) && len(in.Ports) > 0:
			// No request ever comes: a count would only ever say 0.
			fmt.Fprintf(w, "intercept  %s ports %s %s\n", in.Workload, strings.Join(in.Ports, ","), in.State)
		case in.Traffic == string(session.TrafficNone):
			fmt.Fprintf(w, "intercept  %s %s\n", in.Workload, in.State)
		case in.Traffic == string(session.TrafficMirror):
			fmt.Fprintf(w, "intercept  %s ports %s %s (mirror: the pods answer), %d copies\n", in.Workload, strings.Join(in.Ports, ","), in.State, in.Requests)
		default:
			fmt.Fprintf(w, "intercept  %s ports %s %s, %d requests\n", in.Workload, strings.Join(in.Ports, ","), in.State, in.Requests)
		}
		if in.Notice != "" {
			fmt.Fprintf(w, "  warning  %s\n", in.Notice)
		}
	}
	if st.Process != nil {
		fmt.Fprintf(w, "process    %s pid %d %s\n", st.Process.Program, st.Process.PID, st.Process.State)
	}
	if st.LastBuild != nil {
		fmt.Fprintf(w, "last build %s in %dms\n", map[bool]string{true: "ok", false: "failed"}[st.LastBuild.OK], st.LastBuild.Millis)
	}
	return nil
}

// statusLine is the whole status in one line, the most urgent facts first:
// GoLand's External Tools and shell prompts show one line, and a user
// glancing at it must see whether traffic reaches their process.
func statusLine(st session.Status) string {
	var parts []string
	if st.Claim == nil {
		parts = append(parts, "no claim")
	} else {
		parts = append(parts, "claim "+st.Claim.Slot)
	}
	if len(st.Intercepts) == 0 {
		parts = append(parts, "no intercept")
	}
	for _, in := range st.Intercepts {
		switch {
		case in.Traffic == string(session.TrafficNone):
			parts = append(parts, in.Workload+" ingested (traffic none)")
		case in.State == "intercepted":
			var detail []string
			if in.Pods > 0 {
				detail = append(detail, plural(in.Pods, "pod", "pods"))
			}
			if in.Traffic == string(session.TrafficMirror) {
				detail = append(detail, "mirror, "+plural(int(in.Requests), "copy", "copies"))
			} else {
				detail = append(detail, plural(int(in.Requests), "request", "requests"))
			}
			parts = append(parts, fmt.Sprintf("%s intercepted (%s)", in.Workload, strings.Join(detail, ", ")))
		default:
			// Waiting for a debugger, paused, tunnels down: the state
			// itself is what the user must read.
			parts = append(parts, in.Workload+" "+in.State)
		}
	}
	if p := st.Process; p != nil {
		s := "process " + p.State
		if p.Debug {
			s += " (debug)"
		}
		parts = append(parts, s)
	}
	if st.LastBuild != nil && !st.LastBuild.OK {
		parts = append(parts, "last build failed")
	}
	return "kloop: " + strings.Join(parts, " · ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func newClaimCmd() *cobra.Command {
	var f sessionFlags
	var args session.ClaimArgs
	cmd := &cobra.Command{
		Use:   "claim [--pool P] [--for 8h]",
		Short: "Claim an exclusive dev namespace or cluster from a pool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				cl, err := command.Claim.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), cl)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "claimed %s of pool %s until %s\nexport KUBECONFIG=%s\n", cl.Slot, cl.Pool, cl.Until.Local().Format(time.RFC1123), cl.Kubeconfig)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&args.Pool, "pool", "", "pool to claim from (default: claim.pool of .kloop.yaml, else the pool marked default, else the only one)")
	cmd.Flags().StringVar(&args.For, "for", "", "how long the claim lasts (default 8h)")
	f.register(cmd, true)
	return cmd
}

func newReleaseCmd() *cobra.Command {
	var f sessionFlags
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Reset and give back the claimed slot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				before, err := command.Status.Call(ctx, c, command.NoArgs{})
				if err != nil {
					return err
				}
				if _, err := command.Release.Call(ctx, c, session.ReleaseArgs{}); err != nil {
					return err
				}
				if cl := before.Claim; cl != nil && cl.Slot != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "released %s of pool %s; it is reset and free\n", cl.Slot, cl.Pool)
					return nil
				}
				fmt.Fprintln(cmd.OutOrStdout(), "released")
				return nil
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func newLeaveCmd() *cobra.Command {
	var f sessionFlags
	var args session.LeaveArgs
	cmd := &cobra.Command{
		Use:   "leave [WORKLOAD | --all]",
		Short: "End intercepts and restore the workloads' original spec",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			if len(pos) == 1 {
				args.Workload = pos[0]
			}
			if args.Workload == "" && !args.All {
				return fmt.Errorf("name a WORKLOAD to leave, or --all")
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				if _, err := command.Leave.Call(ctx, c, args); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "left")
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&args.All, "all", false, "restore every intercepted workload")
	f.register(cmd, false)
	return cmd
}

func newEnvCmd() *cobra.Command {
	var f sessionFlags
	var args session.EnvArgs
	var out string
	cmd := &cobra.Command{
		Use:   "env WORKLOAD [--format dotenv|json|shell] [--out FILE]",
		Short: "Print the environment of a workload's container, resolved from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			args.Workload = pos[0]
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Env.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if out == "" {
					_, err = io.WriteString(cmd.OutOrStdout(), res.Content)
					return err
				}
				if err := writeEnvFile(out, res.Content); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "kloop: wrote %s's environment to %s\n", args.Workload, out)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&args.Format, "format", "dotenv", "dotenv, json or shell")
	cmd.Flags().StringVar(&out, "out", "", "write to this file (mode 0600, replaced whole) instead of stdout, e.g. .kloop.env for an IDE run configuration")
	f.register(cmd, false)
	return cmd
}

// writeEnvFile replaces path with content, readable by the user only: the
// env holds the pod's secrets, and a run configuration reading the file
// mid-write must not see half of it.
func writeEnvFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kloop-env-*")
	if err != nil {
		return fmt.Errorf("write the env file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write the env file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the env file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write the env file %s: %w", path, err)
	}
	return nil
}

func newRelaunchCmd() *cobra.Command {
	var f sessionFlags
	var args session.RelaunchArgs
	cmd := &cobra.Command{
		Use:   "relaunch [WORKLOAD]",
		Short: "Rebuild and restart the intercepted program now",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			if len(pos) == 1 {
				args.Workload = pos[0]
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				_, err := command.Relaunch.Call(ctx, c, args)
				return err
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func newLogsCmd() *cobra.Command {
	var f sessionFlags
	var args session.LogsArgs
	cmd := &cobra.Command{
		Use:   "logs [--program P] [--tail N]",
		Short: "Print the last output lines of the workspace's program (kept in memory, not on disk)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Logs.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				for _, l := range res.Lines {
					w := cmd.OutOrStdout()
					if l.Stream == "stderr" {
						w = cmd.ErrOrStderr()
					}
					fmt.Fprintln(w, l.Line)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&args.Program, "program", "", "the program as 'kloop status' names it (default: the current one)")
	cmd.Flags().IntVar(&args.Tail, "tail", 0, "only the last N lines (default: all kloop keeps, up to 1000)")
	f.register(cmd, true)
	return cmd
}
