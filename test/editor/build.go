package editor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// RaceEnv, when set, builds kloop with the race detector, so the e2e suites
// check the daemon and the standalone server for data races: any report in
// a kloop process's stderr or the daemon log fails the test.
const RaceEnv = "KLOOP_TEST_RACE"

// BuildKloop builds the kloop binary into dir and returns its path. Tests
// run the real binary, as editors do.
func BuildKloop(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "kloop")
	args := []string{"build", "-o", bin}
	if os.Getenv(RaceEnv) != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/kloop")...)
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build kloop: %w", err)
	}
	return bin, nil
}
