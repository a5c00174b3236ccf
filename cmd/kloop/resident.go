//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

// newAgentInstallCmd is `kloop agent install WORKLOAD`: a resident agent,
// so intercepts of the workload start without a rollout.
func newAgentInstallCmd() *cobra.Command {
	var f sessionFlags
	var args session.AgentInstallArgs
	cmd := &cobra.Command{
		Use:   "install WORKLOAD [--port P]...",
		Short: "Install a resident agent: intercepts of WORKLOAD then start and end without restarting its pods",
		Long: `Install the kloop traffic agent into WORKLOAD to stay. It rolls the pods out
once; the agent then passes every request to the app untouched until someone
intercepts, and intercepts and leaves no longer restart a pod. kloop leave,
even with --all, keeps it; kloop agent uninstall WORKLOAD removes exactly what
it added.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			args.Workload = pos[0]
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.AgentInstall.Call(ctx, c, args)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				ports := make([]string, len(res.Ports))
				for i, p := range res.Ports {
					ports[i] = fmt.Sprint(p)
				}
				how := "installed"
				if res.Existing {
					how = "kept (it was there for an intercept; no pod restarted)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "resident agent %s in %s, ports %s, image %s\n", how, res.Workload, strings.Join(ports, ", "), res.Image)
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&args.Ports, "port", nil, "container port for the agent, by number or name; repeat for several (default: every port a Service targets)")
	f.register(cmd, true)
	return cmd
}

// newAgentUninstallCmd is `kloop agent uninstall WORKLOAD`.
func newAgentUninstallCmd() *cobra.Command {
	var f sessionFlags
	var args session.AgentUninstallArgs
	cmd := &cobra.Command{
		Use:   "uninstall WORKLOAD",
		Short: "Remove WORKLOAD's resident agent, restoring what kloop changed (refused while anyone intercepts it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			args.Workload = pos[0]
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				if _, err := command.AgentUninstall.Call(ctx, c, args); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "resident agent removed from %s\n", args.Workload)
				return nil
			})
		},
	}
	f.register(cmd, false)
	return cmd
}
