//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

func newWorkloadsCmd() *cobra.Command {
	var f sessionFlags
	cmd := &cobra.Command{
		Use:   "workloads",
		Short: "List the Deployments and StatefulSets of the target namespace (the claimed one, else the kubeconfig's) with their ports and kloop agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				res, err := command.Workloads.Call(ctx, c, session.WorkloadsArgs{})
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), res)
				}
				if len(res.Workloads) == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "namespace %s has no Deployments or StatefulSets\n", res.Namespace)
					return nil
				}
				return printWorkloads(cmd.OutOrStdout(), res)
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func printWorkloads(w io.Writer, res *session.WorkloadsResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREADY\tPORTS\tAGENT")
	for _, wl := range res.Workloads {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\n", wl.Workload, wl.Ready, wl.Replicas, portsText(wl.Ports), agentText(wl.Agent))
	}
	return tw.Flush()
}

func portsText(ports []session.WorkloadPort) string {
	if len(ports) == 0 {
		return "-"
	}
	var parts []string
	for _, p := range ports {
		s := strconv.Itoa(p.Port)
		if p.Name != "" {
			s += "(" + p.Name + ")"
		}
		if p.Protocol != "" && p.Protocol != "TCP" {
			s += "/" + p.Protocol
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func agentText(a *session.WorkloadAgent) string {
	if a == nil {
		return "-"
	}
	if a.Error != "" {
		return "unreadable record: " + a.Error
	}
	var parts []string
	if a.Resident {
		parts = append(parts, "resident")
	}
	var holders []string
	for _, h := range a.Holders {
		if h.Rule != "" {
			holders = append(holders, h.Name+" ("+h.Rule+")")
		} else {
			holders = append(holders, h.Name+" (global)")
		}
	}
	if len(holders) > 0 {
		parts = append(parts, "intercepted by "+strings.Join(holders, ", "))
	}
	if len(parts) == 0 {
		return "dormant"
	}
	return strings.Join(parts, "; ")
}
