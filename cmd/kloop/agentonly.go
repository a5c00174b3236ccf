//go:build agentonly

package main

import "github.com/spf13/cobra"

// The agent image's kloop (built with -tags agentonly) has only the
// in-cluster face: kloop agent and kloop version. Without the daemon, the
// CLI, client-go and Delve linked in, it starts with a fifth of the
// resident memory, which every intercepted pod pays for.
func commands() []*cobra.Command {
	return []*cobra.Command{newVersionCmd(), newAgentCmd()}
}

func agentSubcommands() []*cobra.Command { return nil }
