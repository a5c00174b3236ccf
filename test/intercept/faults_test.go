package intercept_test

import (
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestDaemonKilledMidIntercept: kill -9 the daemon while it intercepts and
// runs the program. The agent sends traffic back to the app; the next
// daemon kills the orphaned program and restores the workload exactly.
func TestDaemonKilledMidIntercept(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.specs(t)
	f.mustKloop(t, "intercept", "orders", "--detach")
	if _, a, body := f.getOrder(t); a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %s", body)
	}
	pid := f.status(t).Process.PID

	pids := f.daemon.DaemonPIDs()
	if len(pids) != 1 {
		t.Fatalf("daemons: %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed daemon gone", func() bool { return len(f.daemon.DaemonPIDs()) == 0 })

	// The cluster never black-holes traffic because a laptop went away.
	eventually(t, "traffic back on the app", func() bool {
		_, a, _ := f.getOrder(t)
		return a.Build == ""
	})

	// Any command starts a new daemon, which cleans up.
	f.mustKloop(t, "status")
	eventually(t, "the orphaned program killed", func() bool { return !pidAlive(pid) })
	eventually(t, "the workload restored", func() bool {
		template, ports := f.specs(t)
		return reflect.DeepEqual(template, origTemplate) && reflect.DeepEqual(ports, origPorts)
	})
	eventually(t, "state.json forgetting the intercept", func() bool {
		state, err := os.ReadFile(f.daemon.State + "/state.json")
		return err != nil || !strings.Contains(string(state), "orders")
	})
	// Nothing is left for leave --all, and it says so without failing.
	f.mustKloop(t, "leave", "--all")
}
