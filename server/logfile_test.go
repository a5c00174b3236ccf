package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sizeOf is the size of path, 0 when it does not exist.
func sizeOf(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestLogFileNeverExceedsItsBound(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.log")
	const bound = 10 << 20
	l, err := OpenLogFile(path, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// 100 MiB of log lines of every length, now and then one larger than
	// the bound itself.
	rng := rand.New(rand.NewPCG(1, 2))
	var total, n int64
	for total < 100<<20 {
		size := 20 + rng.IntN(4000)
		if n%5000 == 4999 {
			size = bound + rng.IntN(bound)
		}
		line := fmt.Sprintf("line %d ", n)
		line += strings.Repeat("x", max(0, size-len(line)-1)) + "\n"
		w, err := l.Write([]byte(line))
		if err != nil || w != len(line) {
			t.Fatalf("write %d: %d of %d bytes, %v", n, w, len(line), err)
		}
		total += int64(len(line))
		n++
		if s := sizeOf(t, path); s > bound {
			t.Fatalf("after %d bytes the log is %d bytes, over its bound of %d", total, s, bound)
		}
		if s := sizeOf(t, path+".1"); s > bound {
			t.Fatalf("after %d bytes the rotated log is %d bytes, over the bound of %d", total, s, bound)
		}
	}
	last := "the last line\n"
	if _, err := l.Write([]byte(last)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"daemon.log", "daemon.log.1"}) {
		t.Errorf("files %q, want the log and one rotated file", names)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte(last)) {
		t.Error("the last line written is not at the end of the log")
	}
	for _, p := range []string{path, path + ".1"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v: want mode 0600", p, fi.Mode(), err)
		}
	}
}

func TestLogFileRotatesWhatAnOlderDaemonLeftAndKeepsOneRotatedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.log")
	// An unbounded log of an older kloop, open to others.
	if err := os.WriteFile(path, bytes.Repeat([]byte("old line\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", []byte("older\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLogFile(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, %v: want 0600", fi.Mode(), err)
	}
	if _, err := l.Write([]byte("new line\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new line\n" {
		t.Errorf("log = %q, want only the new line", got)
	}
	if got, _ := os.ReadFile(path + ".1"); !bytes.HasPrefix(got, []byte("old line\n")) {
		t.Errorf("rotated log = %.30q..., want the old log", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("late\n")); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// TestLogFileTakesStderrAlongWhenItRotates runs itself as the daemon would
// be run by the forwarder: stderr is the log file. After a rotation what
// goes to stderr (a panic) must land in the new log, not the rotated one.
func TestLogFileTakesStderrAlongWhenItRotates(t *testing.T) {
	if path := os.Getenv("KLOOP_TEST_LOGFILE_CHILD"); path != "" {
		l, err := OpenLogFile(path, 100)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "stderr before")
		l.Write([]byte(strings.Repeat("x", 99) + "\n")) // rotates
		fmt.Fprintln(os.Stderr, "stderr after")
		os.Exit(0)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.log")
	logf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLogFileTakesStderrAlongWhenItRotates$")
	cmd.Env = append(os.Environ(), "KLOOP_TEST_LOGFILE_CHILD="+path)
	cmd.Stderr = logf
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if !strings.Contains(string(old), "stderr before") || !strings.Contains(string(cur), "stderr after") || strings.Contains(string(old), "stderr after") {
		t.Errorf("daemon.log = %q\ndaemon.log.1 = %q\nwant stderr in the current file after the rotation", cur, old)
	}
}
