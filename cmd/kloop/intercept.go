//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

// newInterceptCmd is `kloop intercept`. Three shapes, as Telepresence users
// expect:
//   - with a program (--program or .kloop.yaml): the daemon builds, runs and
//     relaunches it on save; the command streams its output until Ctrl-C,
//     then leaves (--detach returns at once and keeps it all running);
//   - with `-- CMD ARGS...` and no program: CMD runs here with the pod's env
//     and the intercept ends when it exits;
//   - with neither: traffic goes to the local port and the command returns;
//     `kloop leave` ends it.
func newInterceptCmd() *cobra.Command {
	var f sessionFlags
	var args session.InterceptArgs
	var headers, ports []string
	var detach bool
	cmd := &cobra.Command{
		Use:   "intercept WORKLOAD [--port 8080[:LOCAL]]... [--header NAME=VALUE]... [--path /api/] [--path-regex RE] [--method GET,POST] [--match all|any] [--outbound-include HOST]... [--outbound-exclude HOST]... [--program ./cmd/x] [--detach] [-- ARGS...]",
		Short: "Send a workload's cluster traffic to a process on this machine",
		Long: `Send a workload's cluster traffic to a process on this machine.

With a program (--program, or program/run in .kloop.yaml) kloop builds it, runs it
with the pod's environment and relaunches it on every save; ARGS are its arguments.
The command shows the program's output until Ctrl-C, which ends the intercept;
--detach leaves it running in the daemon instead.

Without a program, "-- CMD ARGS..." runs CMD here with the pod's environment and
ends the intercept when CMD exits. With neither, traffic goes to the local port
until "kloop leave".

A personal intercept takes only the HTTP requests its rule selects; the others
stay on the workload's own container. Each --header, --path, --path-regex and
--method (together) is one condition; a request must meet all of them, or with
--match any at least one. Given here, the rule replaces the one in .kloop.yaml.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			args.Workload = pos[0]
			args.Args = pos[1:]
			if len(ports) > 0 {
				args.Port, args.Ports = ports[0], ports[1:]
			}
			for _, h := range headers {
				name, value, ok := strings.Cut(h, "=")
				if !ok || name == "" {
					return fmt.Errorf("--header %q: want NAME=VALUE, e.g. --header x-dev=me", h)
				}
				if args.Header == nil {
					args.Header = map[string]string{}
				}
				if _, dup := args.Header[name]; dup {
					return fmt.Errorf("--header %q: header %s is given twice; a request carries one value per rule, keep one", h, name)
				}
				args.Header[name] = value
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			f.onOutput = func(l session.OutputLine) {
				w := out
				if l.Stream == "stderr" {
					w = errOut
				}
				fmt.Fprintln(w, l.Line)
			}
			// Relaunches are reported once the first launch is over (it is
			// part of the intercept's progress).
			var lastRelaunch atomic.Int64
			lastRelaunch.Store(-1)
			var buildFailed atomic.Bool
			f.onStatus = func(st session.Status) {
				if last := lastRelaunch.Load(); last >= 0 && st.LastRelaunchMillis != last {
					lastRelaunch.Store(st.LastRelaunchMillis)
					fmt.Fprintf(errOut, "kloop: relaunched in %d ms\n", st.LastRelaunchMillis)
				}
				if failed := st.LastBuild != nil && !st.LastBuild.OK; failed != buildFailed.Swap(failed) && failed {
					fmt.Fprintln(errOut, "kloop: build failed; the previous program keeps serving (errors are in your editor and above)")
				}
			}
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				in, err := command.Intercept.Call(ctx, c, args)
				if err != nil {
					return err
				}
				st, err := command.Status.Call(ctx, c, command.NoArgs{})
				if err != nil {
					return err
				}
				lastRelaunch.Store(st.LastRelaunchMillis)
				if f.output == "json" {
					if err := writeJSON(out, in); err != nil {
						return err
					}
				} else if in.Traffic == string(session.TrafficNone) {
					fmt.Fprintf(out, "ingesting %s: its env, volumes and outbound access to Services here; nothing changed in the cluster (traffic none)\n", in.Workload)
				} else {
					fmt.Fprintf(out, "intercepting %s (ports %s)\n", in.Workload, strings.Join(in.Ports, ","))
				}
				leave := func() error {
					lctx := context.WithoutCancel(ctx)
					if _, err := command.Leave.Call(lctx, c, session.LeaveArgs{Workload: in.Workload}); err != nil {
						return fmt.Errorf("leave %s (run `kloop leave %s` to retry): %w", in.Workload, in.Workload, err)
					}
					if in.Traffic == string(session.TrafficNone) {
						fmt.Fprintf(errOut, "kloop: left %s; the cluster was not changed\n", in.Workload)
					} else {
						fmt.Fprintf(errOut, "kloop: left %s; its original spec is restored\n", in.Workload)
					}
					return nil
				}
				switch {
				case st.Process != nil && !detach:
					fmt.Fprintf(errOut, "kloop: %s runs here and relaunches on save; Ctrl-C ends the intercept\n", st.Process.Program)
					<-ctx.Done()
					return leave()
				case st.Process == nil && len(args.Args) > 0:
					runErr := runWithInterceptEnv(ctx, c, in.Workload, args.Args)
					return errors.Join(runErr, leave())
				case args.Debug && in.Traffic == string(session.TrafficNone):
					fmt.Fprintf(errOut, "kloop: %s waits for a debugger: start the 'kloop' debug configuration for it in your editor to run the program with its env\n", in.Workload)
				case args.Debug:
					// Nothing runs the program until a debug session joins:
					// say so now, not when requests start failing.
					fmt.Fprintf(errOut, "kloop: %s waits for a debugger: start the 'kloop' debug configuration for it in your editor; until one attaches, its traffic comes here and nothing answers it (kloop status says so too)\n", in.Workload)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&ports, "port", nil, "container port to intercept, REMOTE[:LOCAL]; repeat for more ports, the first is the program's")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "personal intercept: only requests with this header NAME=VALUE (repeatable: each is one condition)")
	cmd.Flags().StringVar(&args.Path, "path", "", "personal intercept: only requests whose path starts with this prefix, e.g. /api/")
	cmd.Flags().StringVar(&args.PathRegex, "path-regex", "", "personal intercept: only requests whose path matches this Go regular expression, e.g. ^/v[0-9]+/orders")
	cmd.Flags().StringArrayVar(&args.Method, "method", nil, "personal intercept: only requests of these HTTP methods, e.g. GET,POST (repeatable)")
	cmd.Flags().StringVar(&args.Match, "match", "", "how the rule's conditions combine: all (the default) or any")
	cmd.Flags().BoolVar(&args.Debug, "debug", false, "run the program under the debugger (use your editor's kloop launch configuration)")
	cmd.Flags().StringVar(&args.Program, "program", "", "Go main package to build and run, e.g. ./cmd/orders")
	cmd.Flags().BoolVar(&args.ReplayOnSave, "replay-on-save", false, "after each relaunch, send the last recorded GET (or HEAD, OPTIONS) to the new build and show how its answer changed")
	cmd.Flags().StringVar(&args.Traffic, "traffic", "", "traffic mode: steal (the default) sends the intercepted requests here; mirror lets the pods answer every caller and sends copies here; none changes nothing in the cluster and gives the program the pod's env, volumes and outbound access to Services only")
	cmd.Flags().StringArrayVar(&args.Outbound.Include, "outbound-include", nil, "send the program's connections to this host glob, IP or CIDR (optional :PORT) through the cluster, besides cluster names; repeatable")
	cmd.Flags().StringArrayVar(&args.Outbound.Exclude, "outbound-exclude", nil, "dial this host glob, IP or CIDR (optional :PORT) from this machine even if it is a cluster name or included; repeatable")
	cmd.Flags().BoolVar(&detach, "detach", false, "return at once; the daemon keeps the intercept and the program running")
	f.register(cmd, true)
	return cmd
}

// runWithInterceptEnv runs argv here with the intercepted pod's environment
// (KLOOP_ROOT and the outbound proxy included) and returns when it exits.
func runWithInterceptEnv(ctx context.Context, c *server.Client, workload string, argv []string) error {
	res, err := command.Env.Call(ctx, c, session.EnvArgs{Workload: workload, Format: "json"})
	if err != nil {
		return fmt.Errorf("get the environment of %s: %w", workload, err)
	}
	var vars map[string]string
	if err := json.Unmarshal([]byte(res.Content), &vars); err != nil {
		return fmt.Errorf("decode the environment of %s: %w", workload, err)
	}
	run := exec.CommandContext(ctx, argv[0], argv[1:]...)
	run.Env = os.Environ()
	for k, v := range vars {
		run.Env = append(run.Env, k+"="+v)
	}
	run.Stdin, run.Stdout, run.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Ctrl-C reaches CMD from the terminal too; a SIGTERM of kloop alone is
	// passed on as an interrupt, so CMD (say `go run`, whose child holds
	// the port) can end its own way before it is killed.
	run.Cancel = func() error { return run.Process.Signal(os.Interrupt) }
	run.WaitDelay = 10 * time.Second
	if err := run.Run(); err != nil {
		if ctx.Err() != nil {
			// Ended on purpose: how CMD took the interrupt is no error.
			return nil
		}
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	return nil
}
