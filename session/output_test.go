package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/run"
)

// secretValue is what the test programs print, as a program that prints its
// configuration would print a Secret of the pod's env.
const secretValue = "s3cr3t-hunter2-4f9a"

// fileLogger logs everything, debug included, to daemon.log in a temporary
// directory, as the daemon does.
func fileLogger(t *testing.T) (*slog.Logger, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "daemon.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})), path
}

// shellProgram is a programSpec running script under sh with SECRET in its
// environment; nothing is built and nothing watched.
func shellProgram(dir, name, script string, port int) programSpec {
	return programSpec{
		name:    name,
		key:     name,
		builder: &build.Command{Argv: []string{"true"}, Dir: dir},
		run: run.Spec{
			Argv: []string{"sh", "-c", script},
			Dir:  dir,
			Env:  append(os.Environ(), "SECRET="+secretValue),
			Port: port, ReadyTimeout: 10 * time.Second,
		},
		watchRoot: dir,
		noWatch:   true,
	}
}

func noSecretIn(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, secretValue) {
			t.Fatalf("%s line %d carries the program's secret: %s", path, i+1, line)
		}
	}
}

func TestProgramOutputIsNotLoggedAndTheRingKeepsTheLast1000Lines(t *testing.T) {
	log, logPath := fileLogger(t)
	m := NewManager(Options{Logger: log, Store: NewStore(filepath.Join(t.TempDir(), "state.json"))})
	defer m.Close(context.Background())
	dir := t.TempDir()
	s := m.Open(dir)
	var sent atomic.Int64
	cancel := s.SubscribeEvents(func(e Event) {
		if e.Output != nil && e.Output.Program == "printer" && strings.Contains(e.Output.Line, secretValue) {
			sent.Add(1)
		}
	})
	defer cancel()

	const lines = 10000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "line $i DB_PASSWORD=$SECRET"; i=$((i+1)); done; exec sleep 600`, lines)
	prog, err := s.startProgram(t.Context(), shellProgram(dir, "printer", script, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.stop(context.Background())
	last := fmt.Sprintf("line %d DB_PASSWORD=%s", lines-1, secretValue)
	eventually(t, "the last line in the ring", func() bool {
		out := s.ProgramOutput("printer")
		return len(out) > 0 && out[len(out)-1].Line == last
	})
	if err := prog.stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	out := s.ProgramOutput("printer")
	if len(out) != ProgramOutputLines {
		t.Fatalf("the ring holds %d lines, want the last %d", len(out), ProgramOutputLines)
	}
	for i, l := range out {
		want := fmt.Sprintf("line %d DB_PASSWORD=%s", lines-ProgramOutputLines+i, secretValue)
		if l.Line != want || l.Program != "printer" || l.Stream != "stdout" {
			t.Fatalf("ring[%d] = %+v, want line %q of printer's stdout", i, l, want)
		}
	}
	if got := sent.Load(); got != lines {
		t.Errorf("the editors got %d lines, want all %d", got, lines)
	}
	if s.ProgramOutput("other") != nil {
		t.Error("a program that wrote nothing has output")
	}
	noSecretIn(t, logPath)
}

func TestProgramOutputOfAProgramThatFailsToStartIsNotLogged(t *testing.T) {
	log, logPath := fileLogger(t)
	m := NewManager(Options{Logger: log, Store: NewStore(filepath.Join(t.TempDir(), "state.json"))})
	defer m.Close(context.Background())
	dir := t.TempDir()
	s := m.Open(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	// It prints its config and exits before it listens.
	_, err = s.startProgram(t.Context(), shellProgram(dir, "crasher", `echo "config: password=$SECRET" >&2; exit 3`, port))
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("startProgram: %v, want a StartError", err)
	}
	// The user is told what the program said...
	if !strings.Contains(err.Error(), secretValue) {
		t.Errorf("the error does not show the program's last output: %v", err)
	}
	// ...the log is not: as the loop logged its ExitError, log the
	// StartError as the debug session does when a restart fails.
	m.log.Warn("start the program again after debugging", "err", err)
	noSecretIn(t, logPath)
	data, _ := os.ReadFile(logPath)
	if !strings.Contains(string(data), "crasher did not start") || !strings.Contains(string(data), "output not logged") {
		t.Errorf("the log does not say the program failed:\n%s", data)
	}
	if out := s.ProgramOutput("crasher"); len(out) != 1 || !strings.Contains(out[0].Line, secretValue) || out[0].Stream != "stderr" {
		t.Errorf("ring = %+v, want the line the program printed", out)
	}
}

func TestProgramOutputRingBoundsItsText(t *testing.T) {
	var r outputRing
	long := strings.Repeat("x", 64<<10) // the longest line run passes on
	for i := range 3 * ProgramOutputLines {
		r.add(OutputLine{Program: "p", Line: fmt.Sprintf("%05d", i) + long})
		if r.bytes > programOutputBytes {
			t.Fatalf("after %d lines the ring holds %d bytes, more than %d", i+1, r.bytes, programOutputBytes)
		}
	}
	out := r.ordered()
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1].Line, fmt.Sprintf("%05d", 3*ProgramOutputLines-1)) {
		t.Fatal("the newest line is not kept")
	}
	for i := 1; i < len(out); i++ {
		if out[i].Line[:5] <= out[i-1].Line[:5] {
			t.Fatalf("lines out of order at %d", i)
		}
	}
	// Short lines again fill it up to the line bound.
	for i := range 2 * ProgramOutputLines {
		r.add(OutputLine{Program: "p", Line: fmt.Sprint(i)})
	}
	out = r.ordered()
	if len(out) != ProgramOutputLines || out[0].Line != fmt.Sprint(ProgramOutputLines) || out[len(out)-1].Line != fmt.Sprint(2*ProgramOutputLines-1) {
		t.Fatalf("ring of %d lines from %q to %q, want the last %d", len(out), out[0].Line, out[len(out)-1].Line, ProgramOutputLines)
	}
}
