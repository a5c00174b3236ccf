package editor

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/kloop/kloop/internal/racecheck"
)

// BuildKloop builds the kloop binary into dir and returns its path. Tests
// run the real binary, as editors do. Under `go test -race` it is built with
// -race too (racecheck.BuildFlags), so the e2e suites check the daemon, the
// forwarder and the standalone server for data races: any report of a kloop
// process of an Env fails the test (see NewEnv).
func BuildKloop(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "kloop")
	args := append([]string{"build", "-o", bin}, racecheck.BuildFlags()...)
	cmd := exec.Command("go", append(args, "./cmd/kloop")...)
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build kloop %v: %w", args[3:], err)
	}
	return bin, nil
}

// Binary builds kloop once per test binary into os.TempDir()/name… and
// returns its path; later calls return the same path. The directory is
// fixed (and rebuilt each run, from the build cache) because sandbox.Main
// exits without giving a TestMain the chance to clean up.
type Binary struct {
	name string
	once sync.Once
	path string
	err  error
}

// binarySuffix keeps apart the binaries of different checkouts (git
// worktrees of one machine run their suites at once) and of race and plain
// builds: with one directory, whichever test binary built last would be
// the kloop every concurrent run executes.
func binarySuffix() string {
	_, file, _, _ := runtime.Caller(0)
	h := fnv.New32a()
	h.Write([]byte(filepath.Dir(file)))
	suffix := fmt.Sprintf("-%08x", h.Sum32())
	if racecheck.Enabled {
		suffix += "-race"
	}
	return suffix
}

// NewBinary returns a Binary built into os.TempDir()/name (plus a suffix
// naming the checkout and the build mode).
func NewBinary(name string) *Binary { return &Binary{name: name} }

// Path builds the binary the first time and fails t if it cannot.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir := filepath.Join(os.TempDir(), b.name+binarySuffix())
		if b.err = os.MkdirAll(dir, 0o755); b.err == nil {
			b.path, b.err = BuildKloop(dir)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
