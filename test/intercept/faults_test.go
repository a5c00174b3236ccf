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
	origTemplate, origPorts := f.Specs(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	if _, a, body := f.GetOrder(t); a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %s", body)
	}
	pid := f.Status(t).Process.PID

	pids := f.Daemon.DaemonPIDs()
	if len(pids) != 1 {
		t.Fatalf("daemons: %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed daemon gone", func() bool { return len(f.Daemon.DaemonPIDs()) == 0 })

	// The cluster never black-holes traffic because a laptop went away.
	eventually(t, "traffic back on the app", func() bool {
		_, a, _ := f.GetOrder(t)
		return a.Build == ""
	})

	// Any command starts a new daemon, which cleans up.
	f.MustKloop(t, "status")
	eventually(t, "the orphaned program killed", func() bool { return !pidAlive(pid) })
	eventually(t, "the workload restored", func() bool {
		template, ports := f.Specs(t)
		return reflect.DeepEqual(template, origTemplate) && reflect.DeepEqual(ports, origPorts)
	})
	eventually(t, "state.json forgetting the intercept", func() bool {
		state, err := os.ReadFile(f.Daemon.State + "/state.json")
		return err != nil || !strings.Contains(string(state), "orders")
	})
	// Nothing is left for leave --all, and it says so without failing.
	f.MustKloop(t, "leave", "--all")
}
