package dap

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/dapclient"
)

// startEditor runs `kloop dap` on stdio and connects to it.
func startEditor(t testing.TB, dir string) *dapclient.Client {
	t.Helper()
	return startEditorCmd(t, exec.Command(kloopBin, "dap", "-v"), dir)
}

// startEditorCmd connects to the adapter that cmd runs.
func startEditorCmd(t testing.TB, cmd *exec.Cmd, dir string) *dapclient.Client {
	t.Helper()
	cmd.Dir = dir
	return dapclient.Start(t, cmd, dapclient.Options{Wait: waitLong})
}

// initializeAndLaunch runs the start of a session the way VS Code does.
func initializeAndLaunch(t testing.TB, e *dapclient.Client, launch map[string]any) {
	t.Helper()
	e.Request("initialize", godap.InitializeRequestArguments{
		ClientID: "kloop-test", AdapterID: "kloop", PathFormat: "path",
		LinesStartAt1: true, ColumnsStartAt1: true, SupportsVariableType: true,
	})
	m := e.Await(e.SendRequest("launch", launch), "launch")
	if !m.Success {
		t.Fatalf("launch failed: %s", m.Message)
	}
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z") {
		return true
	}
	// A killed multi-threaded process shows its leader as a zombie while
	// the other threads still exit, and its sockets close only when the
	// last one has: it is gone once no other task remains.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(tasks) > 1
}

// descendants lists live processes below pid.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, ent := range entries {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
			if _, ok := parent[q]; !ok {
				break
			}
		}
	}
	return out
}

// waitGone polls until none of pids is alive.
func waitGone(t testing.TB, pids []int, what string) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		var alive []int
		for _, p := range pids {
			if pidAlive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still running after %s: pids %v", what, waitLong, alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sessionProcs lists what the daemon runs for debug sessions: workers and their
// debuggees (the tests here run one session at a time). env names the daemon; nil
// means the package's shared one.
func sessionProcs(t testing.TB, env []string) []int {
	t.Helper()
	cmd := exec.Command(kloopBin, "daemon", "stats", "-o", "json")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kloop daemon stats: %v", err)
	}
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.PID == 0 {
		t.Fatalf("kloop daemon stats: no pid in %s (%v)", out, err)
	}
	return descendants(st.PID)
}
