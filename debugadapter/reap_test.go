package debugadapter

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestReapOrphans starts a stand-in debuggee (a copy of sleep under the debug binary's
// name) that no worker owns, and one that is an ordinary process, and checks that only
// the first is killed.
func TestReapOrphans(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("need sleep(1): %v", err)
	}
	dir := t.TempDir()
	orphanBin := filepath.Join(dir, debugBinaryName)
	copyFile(t, sleep, orphanBin)
	orphan := exec.Command(orphanBin, "300")
	bystander := exec.Command(sleep, "300")
	for _, c := range []*exec.Cmd{orphan, bystander} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	exited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(exited) }()

	killed := ReapOrphans()
	if !slices.Contains(killed, orphan.Process.Pid) {
		t.Errorf("ReapOrphans killed %v, not the orphaned debuggee %d", killed, orphan.Process.Pid)
	}
	if slices.Contains(killed, bystander.Process.Pid) {
		t.Errorf("ReapOrphans killed an unrelated process %d", bystander.Process.Pid)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatal("orphaned debuggee still running")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}
