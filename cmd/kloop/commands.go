//go:build !agentonly

package main

import "github.com/spf13/cobra"

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
		newWorkloadsCmd(),
		newRelaunchCmd(),
		newLogsCmd(),
		newRequestsCmd(),
		newReplayCmd(),
		newDoctorCmd(),
		newDAPCmd(), newDebugWorkerCmd(),
		newSandboxCmd(),
		newAgentCmd(),
		newPoolCmd(),
		newAgentImageCmd(),
		// Subcommands are added here, one line each.
	}
}

// agentSubcommands are kloop agent's install and uninstall, which talk to
// the daemon; the agent image's build (agentonly) has none.
func agentSubcommands() []*cobra.Command {
	return []*cobra.Command{newAgentInstallCmd(), newAgentUninstallCmd()}
}
