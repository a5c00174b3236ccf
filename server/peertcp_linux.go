package server

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// A loopback TCP port is not private: unlike the daemon's unix socket, which
// sits 0600 in a 0700 directory, anyone on the machine can connect to
// 127.0.0.1:port, and whoever holds the connection to kloop dap can make it
// launch programs as the developer. TCP has no SO_PEERCRED, but the kernel
// lists every socket of this network namespace, with the uid that created it,
// in /proc/net/tcp and /proc/net/tcp6; the peer of an accepted loopback
// connection is the row whose addresses are the mirror image of ours.

// The socket tables searched for the peer's row, IPv4 first.
var procNetTCPFiles = []string{"/proc/net/tcp", "/proc/net/tcp6"}

const (
	// The kernel walks its socket tables without a lock while printing
	// them, so a live socket can be skipped by a read that races with other
	// sockets coming and going. Look again a few times before giving up.
	loopbackPeerAttempts = 5
	loopbackPeerPause    = 25 * time.Millisecond

	// tcpStateTimeWait and tcpStateListen are the st column values (the
	// kernel's TCP_* states) of rows that can never be a connected peer.
	tcpStateTimeWait = 0x06
	tcpStateListen   = 0x0A
)

// errNoPeerRow says the peer's socket is not (or no longer) listed.
var errNoPeerRow = errors.New("no socket in /proc/net/tcp or /proc/net/tcp6 has the mirror addresses")

// LoopbackPeerUID returns the uid that owns the other end of c, a TCP
// connection accepted on a loopback address, by finding the peer's socket in
// /proc/net/tcp or /proc/net/tcp6: the row whose local address is c's remote
// address and whose remote address is c's local address; the uid column.
//
// Both files are searched whatever c's own family is: a client on 127.0.0.1
// reaching a dual-stack listener is an AF_INET socket (in /proc/net/tcp)
// while the accepted end is AF_INET6 with v4-mapped addresses. A row with
// inode 0 is ignored: it is a socket no process holds any more (closed, or a
// TIME_WAIT entry), and the kernel prints uid 0 for some of those, which
// must not pass for root.
func LoopbackPeerUID(c net.Conn) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, fmt.Errorf("connection is %T, not TCP", c)
	}
	local, err := tcpAddrPort(tc.LocalAddr())
	if err != nil {
		return -1, fmt.Errorf("local address: %w", err)
	}
	remote, err := tcpAddrPort(tc.RemoteAddr())
	if err != nil {
		return -1, fmt.Errorf("remote address: %w", err)
	}
	if !remote.Addr().IsLoopback() {
		return -1, fmt.Errorf("connection comes from %s, not a loopback address", remote)
	}
	// The peer's socket has our endpoints swapped.
	want := procNetTCPEntry{Local: remote, Remote: local}

	var lastErr error
	for attempt := 0; attempt < loopbackPeerAttempts; attempt++ {
		if attempt > 0 {
			time.Sleep(loopbackPeerPause)
		}
		uid, err := findProcNetTCPPeer(want)
		if err == nil {
			return uid, nil
		}
		lastErr = err
		if !errors.Is(err, errNoPeerRow) {
			// Unreadable or garbled tables will not get better.
			break
		}
	}
	return -1, fmt.Errorf("finding the owner of %s: %w", remote, lastErr)
}

// CheckLoopbackPeer refuses a TCP connection that does not come from this
// process's uid. It is meant for kloop dap --listen, to be called on every
// accepted connection before reading a byte: a loopback port is reachable by
// every local user, and the debug adapter runs programs with the developer's
// rights.
func CheckLoopbackPeer(c net.Conn) error {
	me := os.Getuid()
	uid, err := LoopbackPeerUID(c)
	if err != nil {
		return fmt.Errorf("kloop dap --listen: refused a connection from %s: cannot tell which user made it, and only uid %d, who started kloop dap, may connect: %w",
			c.RemoteAddr(), me, err)
	}
	if uid != me {
		return fmt.Errorf("kloop dap --listen: refused a connection from uid %d: only uid %d, who started kloop dap, may connect",
			uid, me)
	}
	return nil
}

// tcpAddrPort returns a's address in the form rows are compared in: IPv4
// and v4-mapped IPv6 alike as plain IPv4, and no zone.
func tcpAddrPort(a net.Addr) (netip.AddrPort, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}, fmt.Errorf("%v is %T, not a TCP address", a, a)
	}
	ap := ta.AddrPort()
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, fmt.Errorf("%v has no IP address", a)
	}
	return normalAddrPort(ap), nil
}

func normalAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// findProcNetTCPPeer returns the uid of the row in procNetTCPFiles that
// matches want's addresses, or an error wrapping errNoPeerRow if none does.
func findProcNetTCPPeer(want procNetTCPEntry) (int, error) {
	var readErrs []error
	read := 0
	for _, path := range procNetTCPFiles {
		uid, found, err := scanProcNetTCP(path, want)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// No IPv6 in this kernel, say.
				continue
			}
			readErrs = append(readErrs, err)
			continue
		}
		read++
		if found {
			return uid, nil
		}
	}
	if read == 0 {
		if len(readErrs) == 0 {
			return -1, fmt.Errorf("none of %s exists", strings.Join(procNetTCPFiles, ", "))
		}
		return -1, errors.Join(readErrs...)
	}
	return -1, errNoPeerRow
}

// scanProcNetTCP looks for want in one /proc/net/tcp-style file. Lines that do
// not parse are skipped rather than fatal: the header is one, and a format the
// kernel grows later should not make every connection fail. It is an error
// only when two live sockets both match, which the kernel cannot produce; the
// rule is to refuse rather than guess.
func scanProcNetTCP(path string, want procNetTCPEntry) (uid int, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return -1, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	uid = -1
	for sc.Scan() {
		e, err := parseProcNetTCPLine(sc.Text(), binary.NativeEndian)
		if err != nil {
			continue
		}
		if e.Local != want.Local || e.Remote != want.Remote {
			continue
		}
		if e.Inode == 0 || e.State == tcpStateTimeWait || e.State == tcpStateListen {
			continue
		}
		if found && e.UID != uid {
			return -1, false, fmt.Errorf("%s: two sockets %s -> %s with uids %d and %d", path, e.Local, e.Remote, uid, e.UID)
		}
		uid, found = e.UID, true
	}
	if err := sc.Err(); err != nil {
		return -1, false, fmt.Errorf("reading %s: %w", path, err)
	}
	return uid, found, nil
}

// procNetTCPEntry is what LoopbackPeerUID needs from one row of
// /proc/net/tcp or /proc/net/tcp6. Addresses are normalized as by
// normalAddrPort.
type procNetTCPEntry struct {
	Local, Remote netip.AddrPort
	State         uint8
	UID           int
	Inode         uint64
}

// parseProcNetTCPLine parses one socket row of /proc/net/tcp or
// /proc/net/tcp6, for example
//
//	0: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 48211 1 0000000000000000 20 4 30 10 -1
//
// The fields are sl, local_address, rem_address, st, tx_queue:rx_queue,
// tr:tm->when, retrnsmt, uid, timeout, inode, then more that are ignored.
// An address is hex IP:port. The port is printed as a number, so big-endian.
// The IP is the in-memory network-order bytes printed as 32-bit words in the
// kernel's byte order (order): one word for IPv4, four for IPv6, so on a
// little-endian machine 127.0.0.1 reads 0100007F.
func parseProcNetTCPLine(line string, order binary.ByteOrder) (procNetTCPEntry, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return procNetTCPEntry{}, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	if !strings.HasSuffix(f[0], ":") {
		return procNetTCPEntry{}, fmt.Errorf("slot %q does not end in a colon", f[0])
	}
	var e procNetTCPEntry
	var err error
	if e.Local, err = parseProcNetAddr(f[1], order); err != nil {
		return procNetTCPEntry{}, fmt.Errorf("local address: %w", err)
	}
	if e.Remote, err = parseProcNetAddr(f[2], order); err != nil {
		return procNetTCPEntry{}, fmt.Errorf("remote address: %w", err)
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return procNetTCPEntry{}, fmt.Errorf("state %q: %w", f[3], err)
	}
	e.State = uint8(st)
	uid, err := strconv.ParseUint(f[7], 10, 32)
	if err != nil {
		return procNetTCPEntry{}, fmt.Errorf("uid %q: %w", f[7], err)
	}
	e.UID = int(uid)
	if e.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return procNetTCPEntry{}, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return e, nil
}

// parseProcNetAddr parses "0100007F:1F90" (IPv4) or a 32-digit IPv6 address
// and port, as described at parseProcNetTCPLine.
func parseProcNetAddr(s string, order binary.ByteOrder) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok || len(portHex) != 4 {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:port in hex", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	if len(ipHex) != 8 && len(ipHex) != 32 {
		return netip.AddrPort{}, fmt.Errorf("IP in %q has %d hex digits, want 8 or 32", s, len(ipHex))
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("IP in %q: %w", s, err)
	}
	// raw holds each word most significant byte first; store each word
	// back in the kernel's order to recover the bytes as they were in
	// memory, which is network order.
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		order.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return normalAddrPort(netip.AddrPortFrom(addr, uint16(port))), nil
}
