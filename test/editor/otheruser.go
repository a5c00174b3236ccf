package editor

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NewEnvAs is a daemon environment of another user of this machine (uid,
// with the same gid): its own HOME, XDG_RUNTIME_DIR, socket and state, all
// owned by that user, and a copy of binary it can run. Only root can start
// processes as another user; the test fails otherwise.
func NewEnvAs(t testing.TB, binary string, uid int) *Env {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatalf("running kloop as uid %d needs root (running as uid %d)", uid, os.Getuid())
	}
	// Under /tmp, not t.TempDir: its parents are private to this user.
	base, err := os.MkdirTemp("/tmp", "kloop-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]os.FileMode{"home": 0o700, "xdg": 0o700, "run": 0o700, "bin": 0o755, "race": 0o700}
	for name, mode := range dirs {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	env := &Env{
		Binary:     WorldExecutable(t, binary, filepath.Join(base, "bin")),
		Socket:     filepath.Join(base, "run", "d", "daemon.sock"),
		State:      filepath.Join(base, "home", "state"),
		Extra:      []string{"HOME=" + filepath.Join(base, "home"), "XDG_RUNTIME_DIR=" + filepath.Join(base, "xdg"), "USER=uid" + strconv.Itoa(uid)},
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)},
		RaceLog:    filepath.Join(base, "race", "race"),
	}
	t.Cleanup(func() {
		env.StopDaemon(t)
		if err := env.CheckRaces(); err != nil {
			t.Error(err)
		}
	})
	return env
}

// Home is the other user's home directory (NewEnvAs), where a workspace
// of theirs may go.
func (e *Env) Home() string {
	for _, kv := range e.Extra {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			return v
		}
	}
	return ""
}

// WorldExecutable copies binary into dir (0755) where any user can run it:
// a test binary's own directory is private to the user running it.
func WorldExecutable(t testing.TB, binary, dir string) string {
	t.Helper()
	src, err := os.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, filepath.Base(binary))
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
