// Package server is kloop's per-user daemon: the unix socket it listens on,
// the peer check, auto-start from the `kloop lsp` stdio forwarder, and the
// lifecycle of each connected editor or CLI invocation.
package server

import (
	"fmt"
	"os"
	"path/filepath"
)

// Paths names the files one daemon owns. Tests point them at a temporary
// directory so that runs never meet the user's real daemon.
type Paths struct {
	// Socket is the unix socket editors and the CLI connect to.
	Socket string
	// State is the directory for state.json and the daemon log.
	State string
}

// DefaultPaths resolves the socket and state locations of DESIGN.md.
// KLOOP_SOCKET and KLOOP_STATE_DIR override them.
func DefaultPaths() (Paths, error) {
	var p Paths
	if s := os.Getenv("KLOOP_SOCKET"); s != "" {
		p.Socket = s
	} else if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		p.Socket = filepath.Join(d, "kloop", "daemon.sock")
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			return p, fmt.Errorf("find the socket directory: set XDG_RUNTIME_DIR or HOME: %w", err)
		}
		p.Socket = filepath.Join(home, ".cache", "kloop", "daemon.sock")
	}
	if s := os.Getenv("KLOOP_STATE_DIR"); s != "" {
		p.State = s
	} else if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		p.State = filepath.Join(d, "kloop")
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			return p, fmt.Errorf("find the state directory: set XDG_STATE_HOME or HOME: %w", err)
		}
		p.State = filepath.Join(home, ".local", "state", "kloop")
	}
	return p, nil
}

// StateFile is where claims, intercepts and pids are recorded before they
// are acted on.
func (p Paths) StateFile() string { return filepath.Join(p.State, "state.json") }

// LogFile is where an auto-started daemon writes its log.
func (p Paths) LogFile() string { return filepath.Join(p.State, "daemon.log") }

// lockFile serialises daemon start-up: held for the daemon's whole life.
func (p Paths) lockFile() string { return p.Socket + ".lock" }

// startLockFile serialises forwarders that race to auto-start a daemon.
func (p Paths) startLockFile() string { return p.Socket + ".start.lock" }

// ensurePrivateDir creates dir 0700, or tightens an existing one that we own.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if uid, ok := ownerUID(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("directory %s belongs to uid %d, not to you (uid %d); remove it or set KLOOP_SOCKET to a path of your own", dir, uid, os.Getuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}
