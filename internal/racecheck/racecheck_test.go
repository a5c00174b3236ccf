package racecheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// body is one race report as Reports returns it; report is how the race
// detector prints it, between two separators.
const (
	body = `WARNING: DATA RACE
Write at 0x00c000012345 by goroutine 7:
  main.main.func1()
      /tmp/x/main.go:9 +0x44

Previous read at 0x00c000012345 by main goroutine:
  main.main()
      /tmp/x/main.go:11 +0x88
`
	report = "==================\n" + body + "==================\n"
)

func TestReports(t *testing.T) {
	second := strings.Replace(report, "goroutine 7", "goroutine 9", 1)
	for _, tc := range []struct {
		name, output, want string
	}{
		{"none", "listening on 127.0.0.1:8080\nstopped\n", ""},
		{"one between other output", "started\n" + report + "more output\n", body},
		{"cut off mid-report", "started\n==================\nWARNING: DATA RACE\nWrite at 0x1 by goroutine 3:\n", "WARNING: DATA RACE\nWrite at 0x1 by goroutine 3:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reports(tc.output); got != tc.want {
				t.Errorf("Reports = %q, want %q", got, tc.want)
			}
		})
	}
	got := Reports(report + "between\n" + second + "Found 2 data race(s)\n")
	if strings.Count(got, Marker) != 2 || !strings.Contains(got, "goroutine 7") || !strings.Contains(got, "goroutine 9") || strings.Contains(got, "between") {
		t.Errorf("two reports: got %q", got)
	}
	if err := Check("kloop daemon", "fine\n"); err != nil {
		t.Errorf("Check of clean output: %v", err)
	}
	if err := Check("kloop daemon", report); err == nil || !strings.Contains(err.Error(), "kloop daemon reported a data race") || !strings.Contains(err.Error(), "main.go:9") {
		t.Errorf("Check of a report = %v, want one naming the process with the stack", err)
	}
}

// TestLogEnvCatchesARealRace builds a racy program with -race, runs it with
// LogEnv and expects CheckLogs to find its report: the harnesses rely on the
// race runtime honouring log_path.
func TestLogEnvCatchesARealRace(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := `package main

import "fmt"

func main() {
	n := 0
	done := make(chan bool)
	go func() { n++; done <- true }()
	n++
	<-done
	fmt.Println(n)
}
`
	if err := os.WriteFile(src, []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "racy")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	if err := CheckLogs(filepath.Join(dir, "race")); err != nil {
		t.Fatalf("CheckLogs before any run: %v", err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), LogEnv(filepath.Join(dir, "race")))
	out, _ := cmd.CombinedOutput() // exit status 66: the race found
	if strings.Contains(string(out), Marker) {
		t.Errorf("the report went to the output, not to the log file:\n%s", out)
	}
	err := CheckLogs(filepath.Join(dir, "race"))
	if err == nil || !strings.Contains(err.Error(), "main.go") {
		t.Fatalf("CheckLogs = %v, want the racy program's report", err)
	}
}
