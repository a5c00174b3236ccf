package debugadapter

import (
	"fmt"
	"os"
	"strings"
)

const ptraceScopeFile = "/proc/sys/kernel/yama/ptrace_scope"

// explainLaunchFailure turns Delve's launch error into a message that says how to fix
// the usual cause, a kernel or container that forbids ptrace.
func explainLaunchFailure(delveMessage string) string {
	return explainLaunchFailureWithScope(delveMessage, readPtraceScope())
}

func explainLaunchFailureWithScope(delveMessage, scope string) string {
	msg := "the debugger could not start the program: " + orDefault(delveMessage, "no reason given")
	lower := strings.ToLower(delveMessage)
	if !strings.Contains(lower, "operation not permitted") && !strings.Contains(lower, "ptrace") {
		return msg
	}
	hint := "Delve is not allowed to trace the program (ptrace was denied)."
	switch scope {
	case "":
		hint += " Run kloop as the same user as the program; in a container, add the SYS_PTRACE capability (docker run --cap-add=SYS_PTRACE) and allow ptrace in the seccomp profile."
	case "0", "1":
		hint += fmt.Sprintf(" kernel.yama.ptrace_scope is %s, which allows it, so a container or seccomp profile is the likely cause: add the SYS_PTRACE capability (docker run --cap-add=SYS_PTRACE) or run kloop as the same user as the program.", scope)
	default:
		hint += fmt.Sprintf(" kernel.yama.ptrace_scope is %s; allow tracing with `sudo sysctl kernel.yama.ptrace_scope=0` (scope 3 needs a reboot to lower), or run kloop as the same user as the program.", scope)
	}
	return msg + "\n" + hint
}

func readPtraceScope() string {
	data, err := os.ReadFile(ptraceScopeFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
