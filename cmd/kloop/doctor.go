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

func newDoctorCmd() *cobra.Command {
	var f sessionFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what kloop needs: the cluster, your permissions there, the agent image, port-forward, the daemon and the editors",
		Long: `Checks, for this workspace's cluster and namespace (the claimed slot, else
the kubeconfig context): the API server and its version; every permission
intercept needs (and claim, which is optional), with SelfSubjectAccessReview,
naming what is missing and the Role in deploy/ that grants it; the agent image
kloop injects and which setting chose it; a port-forward to a pod of the
namespace; the daemon's socket and peer check; the editors connected.
Each problem comes with its fix. Exits 1 when a check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, c *server.Client) error {
				rep, err := command.Doctor.Call(ctx, c, session.DoctorArgs{})
				if err != nil {
					return err
				}
				if f.output == "json" {
					if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
						return err
					}
				} else {
					w := cmd.OutOrStdout()
					for _, fd := range rep.Findings {
						fmt.Fprintf(w, "%-4s  %s: %s\n", strings.ToUpper(fd.Status), fd.Check, fd.Detail)
						for _, m := range fd.Missing {
							fmt.Fprintf(w, "      missing: %s\n", m)
						}
						if fd.Fix != "" {
							fmt.Fprintf(w, "      fix: %s\n", fd.Fix)
						}
					}
				}
				if !rep.Healthy {
					return exitError{code: 1}
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}
