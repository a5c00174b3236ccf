package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkPeer refuses a connection from any user but the daemon's own. The
// socket is 0600 in a 0700 directory already; this holds even if someone
// loosens those modes, since root-owned tools may pass descriptors around.
func checkPeer(c net.Conn) error {
	cred, err := peerCred(c)
	if err != nil {
		return err
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer uid %d (pid %d) is not the daemon's uid %d", cred.Uid, cred.Pid, os.Getuid())
	}
	return nil
}

// errForeignServer marks a socket that another user's process listens on.
var errForeignServer = errors.New("the socket is not served by your own kloop daemon")

// checkServer is the client's side of checkPeer: before a byte is written,
// it makes sure the process that listens on socket runs as this user. The
// initialize the CLI and the editors send names the workspace and the pid,
// and the requests that follow are acted on as this user's: a socket in a
// shared directory (KLOOP_SOCKET=/tmp/x.sock) can be taken by anyone.
func checkServer(c net.Conn, socket string) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("check who listens on %s: %w", socket, err)
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("%w: refused to talk to %s: the process listening there (pid %d) runs as uid %d, not as you (uid %d), and nothing was sent to it; every user runs a daemon of their own: point KLOOP_SOCKET at a path in a private directory, such as $XDG_RUNTIME_DIR/kloop/daemon.sock", errForeignServer, socket, cred.Pid, cred.Uid, os.Getuid())
	}
	return nil
}

// peerCred reads the credentials of the process at the other end of c, as
// the kernel recorded them at connect or listen time (SO_PEERCRED).
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("connection is %T, not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	return cred, nil
}

func ownerUID(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// modeBits returns fi's permission bits with setuid, setgid and sticky, as
// chmod spells them (1777 for /tmp).
func modeBits(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Mode & 0o7777
	}
	return uint32(fi.Mode().Perm())
}
