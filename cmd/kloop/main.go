// Command kloop is the single binary of kloop: the per-user daemon, the LSP and
// DAP faces editors spawn, the CLI, the sandbox cluster and the in-cluster agent.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		// Errors from the daemon already carry the "kloop: " prefix.
		fmt.Fprintln(os.Stderr, "kloop:", strings.TrimPrefix(err.Error(), "kloop: "))
		os.Exit(1)
	}
}

// exitError carries an exit code for errors already reported to the user.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kloop",
		Short:         "Make the Kubernetes inner loop as short as a local one",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}

// commands lists every subcommand. Each lives in its own file as newXxxCmd.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(),
		newDaemonCmd(),
		newLSPCmd(),
		newStatusCmd(),
		newClaimCmd(),
		newReleaseCmd(),
		newInterceptCmd(),
		newLeaveCmd(),
		newEnvCmd(),
		newRelaunchCmd(),
		newLogsCmd(),
		newRequestsCmd(),
		newReplayCmd(),
		newDAPCmd(), newDebugWorkerCmd(),
		newSandboxCmd(),
		newAgentCmd(),
		newPoolCmd(),
		// Subcommands are added here, one line each.
	}
}
