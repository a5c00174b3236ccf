package editor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildKloop builds the kloop binary into dir and returns its path. Tests
// run the real binary, as editors do.
func BuildKloop(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "kloop")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kloop")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build kloop: %w", err)
	}
	return bin, nil
}
