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
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}

// rootLong is what `kloop` with no arguments prints first: the next
// commands to run, in README.md's order.
const rootLong = `Make the Kubernetes inner loop as short as a local one: a workload's cluster
traffic reaches a program on this machine, run with the pod's env and
rebuilt and relaunched on every save.

Start here:
  kloop sandbox up                                no cluster? a local one to try kloop on
  kloop pool create dev --namespaces 5 --default  cluster admin, once: dev namespaces to claim
  kloop claim                                     a namespace of your own, from the default pool
  kloop intercept NAME --program ./cmd/NAME       NAME's traffic to your build; Ctrl-C ends it
  kloop status                                    what this workspace holds now
  kloop release                                   give the namespace back`
