package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kloop/kloop/kube/doctor"
	"github.com/kloop/kloop/session"
)

// health is kloop.doctor's check of the daemon: its socket is where
// DESIGN.md says, private (0600 in a 0700 directory of this user's), and a
// connection to it passes the peer check both ways.
func health(paths Paths, version string) []session.Finding {
	f := session.Finding{Check: "daemon", Status: doctor.OK}
	problems := socketProblems(paths.Socket)
	if len(problems) == 0 {
		if err := peerRoundTrip(paths.Socket); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		f.Status = doctor.Fail
		f.Detail = fmt.Sprintf("daemon pid %d (kloop %s) on %s: %s", os.Getpid(), version, paths.Socket, strings.Join(problems, "; "))
		f.Fix = "stop it (`kloop daemon stop`) and let the next command start a fresh one; " + socketDir.advice
		return []session.Finding{f}
	}
	f.Detail = fmt.Sprintf("daemon pid %d (kloop %s) on %s: socket 0600 in a private directory, peer uid checked", os.Getpid(), version, paths.Socket)
	return []session.Finding{f}
}

func socketProblems(socket string) []string {
	var out []string
	fi, err := os.Lstat(socket)
	if err != nil {
		return []string{fmt.Sprintf("socket: %v", err)}
	}
	if fi.Mode()&os.ModeSocket == 0 {
		out = append(out, "is not a socket")
	}
	if m := modeBits(fi); m&0o077 != 0 {
		out = append(out, fmt.Sprintf("socket mode %04o lets others connect (want 0600)", m))
	}
	if uid, ok := ownerUID(fi); ok && uid != os.Getuid() {
		out = append(out, fmt.Sprintf("socket belongs to uid %d, not to you (uid %d)", uid, os.Getuid()))
	}
	dir := filepath.Dir(socket)
	di, err := os.Stat(dir)
	if err != nil {
		return append(out, fmt.Sprintf("socket directory: %v", err))
	}
	if m := modeBits(di); m&0o077 != 0 {
		out = append(out, fmt.Sprintf("directory %s is mode %04o (want 0700)", dir, m))
	}
	return out
}

// peerRoundTrip connects to the socket as a client would and checks who
// listens there, proving SO_PEERCRED works on this system.
func peerRoundTrip(socket string) error {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return fmt.Errorf("connect to the socket: %w", err)
	}
	defer c.Close()
	return checkServer(c, socket)
}
