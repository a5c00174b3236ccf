// Package server is kloop's per-user daemon: the unix socket it listens on,
// the peer check, auto-start from the `kloop lsp` stdio forwarder, and the
// lifecycle of each connected editor or CLI invocation.
package server

import (
	"errors"
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
		// A directory of its own: ~/.cache/kloop is shared with the
		// sandbox build cache, which creates it 0755, and an existing
		// directory is never made private behind its owner's back (see
		// ensurePrivateDir).
		p.Socket = filepath.Join(home, ".cache", "kloop", "run", "daemon.sock")
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

// stateLockFile is held by the one daemon that owns the state directory, for
// its whole life, beside the socket's lock: state.json and crash recovery are
// per state directory, so two daemons on one (started with different
// sockets) would each take the other's programs for leftovers of a crash.
// The holder records its pid and socket in it (see lockState).
func (p Paths) stateLockFile() string { return filepath.Join(p.State, "daemon.lock") }

// startLockFile serialises forwarders that race to auto-start a daemon.
func (p Paths) startLockFile() string { return p.Socket + ".start.lock" }

// dirRole says which setting chose a directory, for the advice in errors.
type dirRole struct {
	what   string // what kloop keeps there
	advice string // how to choose another directory
}

var (
	socketDir = dirRole{"the daemon's socket", "point KLOOP_SOCKET at a path in a private directory, such as $XDG_RUNTIME_DIR/kloop/daemon.sock (kloop creates the directory 0700)"}
	stateDir  = dirRole{"the daemon's state", "point KLOOP_STATE_DIR at a directory of kloop's own, such as $XDG_STATE_HOME/kloop (kloop creates it 0700)"}
)

// ensurePrivateDir makes sure dir exists, belongs to this user and is private
// (no group or other permission bits). A missing directory is created 0700.
// An existing one is never changed: it may be shared (/tmp, $HOME) and a
// chmod would lock other users or programs out of it, so a directory that is
// not private, or not ours, is refused with what to do instead.
func ensurePrivateDir(dir string, role dirRole) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the directory for %s: %w; %s", role.what, err, role.advice)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s, the directory for %s, is not a directory; %s", dir, role.what, role.advice)
	}
	if uid, ok := ownerUID(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("directory %s, for %s, belongs to uid %d, not to you (uid %d): %s", dir, role.what, uid, os.Getuid(), role.advice)
	}
	if mode := modeBits(fi); mode&0o077 != 0 {
		msg := fmt.Sprintf("directory %s is shared (mode %04o), and kloop keeps %s only in a private directory (mode 0700); it does not change the mode of an existing directory: %s", dir, mode, role.what, role.advice)
		if mode&0o1000 == 0 {
			msg += fmt.Sprintf(", or, if the directory is kloop's alone, make it private with `chmod 700 %s`", dir)
		}
		return errors.New(msg)
	}
	return nil
}
