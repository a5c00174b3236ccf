package session

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// An intercept materializes its pod's ConfigMap and Secret volumes in a
// root directory (KLOOP_ROOT) for the local program. They hold secrets, so
// the root lives on the user's runtime directory when that is private (a
// tmpfs on most Linux desktops: it never reaches the disk and is emptied at
// logout), else in a 0700 directory under the state directory; and it lives
// only as long as the intercept: it is removed when the intercept ends or
// fails, when the daemon exits (Manager.Close), and by the next daemon for
// the intercepts a crashed one recorded (recoverLeftovers).

// initRoots picks the directory the intercepts' roots go under.
func (m *Manager) initRoots() {
	m.roots = m.stateRoots()
	if dir := m.opts.RuntimeDir; dir != "" {
		if err := checkPrivate(dir); err != nil {
			m.log.Warn("materialized volumes go under the state directory instead of the runtime directory", "runtimeDir", dir, "err", err)
			return
		}
		m.roots = runtimeRoots(dir)
	}
}

// runtimeRoots and stateRoots are the two places roots can be.
func runtimeRoots(runtimeDir string) string { return filepath.Join(runtimeDir, "kloop", "root") }

func (m *Manager) stateRoots() string { return filepath.Join(m.stateDir(), "root") }

// rootOf is the root of workspace's intercept of workload under base.
func rootOf(base, workspace, workload string) string {
	return filepath.Join(base, dirName(workspace), dirName(workload))
}

// dirName is s as one directory name that can never be "", "." or "..",
// so a root is always two levels below its base.
func dirName(s string) string {
	n := sanitize(s)
	switch n {
	case "", ".", "..":
		return "_" + n
	}
	return n
}

// makeRoot creates the root of workspace's intercept of workload, every
// directory from the base down private (0700) and the user's.
func (m *Manager) makeRoot(workspace, workload string) (string, error) {
	root := rootOf(m.roots, workspace, workload)
	// From RuntimeDir/kloop, or the state directory, down.
	for _, d := range []string{filepath.Dir(m.roots), m.roots, filepath.Dir(root), root} {
		if err := ensurePrivateDir(d); err != nil {
			return "", fmt.Errorf("create the directory for %s's volumes: %w", workload, err)
		}
	}
	return root, nil
}

// removeRoot removes a root and, when that leaves it empty, its
// workspace's directory.
func removeRoot(root string) error {
	if root == "" {
		return nil
	}
	err := removeAll(root)
	// Fails while another intercept of the workspace has a root: fine.
	_ = os.Remove(filepath.Dir(root))
	if err != nil {
		return fmt.Errorf("remove the materialized volumes %s: %w", root, err)
	}
	return nil
}

// removeAll is os.RemoveAll that also gets through directories a volume's
// mode left without write permission.
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// removeRootOf removes the root of workspace's intercept of workload and
// logs a failure: the caller goes on (the intercept is over regardless).
func (m *Manager) removeRootOf(root, workspace, workload string) {
	if root == "" {
		return
	}
	if err := removeRoot(root); err != nil {
		m.log.Error("remove materialized volumes", "workspace", workspace, "workload", workload, "err", err)
	}
}

// removeLeftRoots removes the roots a crashed daemon may have left for
// workspace's workload, wherever that daemon put them.
func (m *Manager) removeLeftRoots(workspace, workload string) {
	bases := []string{m.roots, m.stateRoots()}
	if m.opts.RuntimeDir != "" {
		bases = append(bases, runtimeRoots(m.opts.RuntimeDir))
	}
	seen := map[string]bool{}
	for _, b := range bases {
		root := rootOf(b, workspace, workload)
		if seen[root] {
			continue
		}
		seen[root] = true
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := removeRoot(root); err != nil {
			m.log.Error("remove materialized volumes left by the previous daemon", "workspace", workspace, "workload", workload, "err", err)
			continue
		}
		m.log.Info("removed materialized volumes left by the previous daemon", "workspace", workspace, "workload", workload)
	}
}

// checkPrivate reports why dir is not a directory of the user's that no
// one else can enter (nil when it is).
func checkPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s is open to others (mode %#o)", dir, perm)
	}
	return nil
}

// ensurePrivateDir creates dir 0700, or makes an existing directory of the
// user's 0700; one of someone else's, or a symlink, is refused.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}
