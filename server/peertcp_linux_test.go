package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLoopbackPeerParseLine(t *testing.T) {
	le := binary.ByteOrder(binary.LittleEndian)
	ap := netip.MustParseAddrPort
	tests := []struct {
		name  string
		line  string
		order binary.ByteOrder
		want  procNetTCPEntry
	}{{
		name:  "ipv4 established",
		line:  "   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 48211 1 0000000000000000 20 4 30 10 -1",
		order: le,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:54321"), Remote: ap("127.0.0.1:8080"), State: 0x01, UID: 1000, Inode: 48211},
	}, {
		name:  "ipv4 listening on all addresses",
		line:  "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 232 1 00000000fe9f43ee 100 0 0 10 0",
		order: le,
		want:  procNetTCPEntry{Local: ap("0.0.0.0:2024"), Remote: ap("0.0.0.0:0"), State: 0x0A, UID: 0, Inode: 232},
	}, {
		name:  "ipv4 other loopback address, nobody",
		line:  "  12: 0500007F:0050 0100007F:C000 01 00000000:00000000 00:00000000 00000000 65534        0 9 1 0000000000000000 20 4 30 10 -1",
		order: le,
		want:  procNetTCPEntry{Local: ap("127.0.0.5:80"), Remote: ap("127.0.0.1:49152"), State: 0x01, UID: 65534, Inode: 9},
	}, {
		name:  "ipv4 time wait",
		line:  "   7: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000",
		order: le,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:40000"), Remote: ap("127.0.0.1:8080"), State: 0x06, UID: 0, Inode: 0},
	}, {
		name:  "ipv6 loopback",
		line:  "   1: 00000000000000000000000001000000:E2A8 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 77001 1 0000000000000000 20 4 30 10 -1",
		order: le,
		want:  procNetTCPEntry{Local: ap("[::1]:58024"), Remote: ap("[::1]:8080"), State: 0x01, UID: 1000, Inode: 77001},
	}, {
		name:  "ipv6 v4-mapped comes out as ipv4",
		line:  "   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 48212 1 0000000000000000 20 4 30 10 -1",
		order: le,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:54321"), State: 0x01, UID: 0, Inode: 48212},
	}, {
		name:  "ipv6 word order",
		line:  "   4: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:C350 01 00000000:00000000 00:00000000 00000000  1001        0 5 1 0000000000000000 20 4 30 10 -1",
		order: le,
		want:  procNetTCPEntry{Local: ap("[2001:db8::1]:443"), Remote: ap("[2001:db8::2]:50000"), State: 0x01, UID: 1001, Inode: 5},
	}, {
		name:  "lower-case hex",
		line:  "   5: 0100007f:d431 0100007f:1f90 01 00000000:00000000 00:00000000 00000000  1000        0 1 1",
		order: le,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:54321"), Remote: ap("127.0.0.1:8080"), State: 0x01, UID: 1000, Inode: 1},
	}, {
		name:  "big-endian ipv4",
		line:  "   0: 7F000001:D431 7F000001:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 48211 1",
		order: binary.BigEndian,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:54321"), Remote: ap("127.0.0.1:8080"), State: 0x01, UID: 1000, Inode: 48211},
	}, {
		name:  "big-endian ipv6 v4-mapped",
		line:  "   0: 00000000000000000000FFFF7F000001:D431 00000000000000000000FFFF7F000001:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 48211 1",
		order: binary.BigEndian,
		want:  procNetTCPEntry{Local: ap("127.0.0.1:54321"), Remote: ap("127.0.0.1:8080"), State: 0x01, UID: 1000, Inode: 48211},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcNetTCPLine(tt.line, tt.order)
			if err != nil {
				t.Fatalf("parseProcNetTCPLine: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseProcNetTCPLine =\n\t%+v\nwant\n\t%+v", got, tt.want)
			}
		})
	}
}

func TestLoopbackPeerParseLineRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000",                     // too short
		"   3 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1",                  // slot without colon
		"   3: 0100007F 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1",                      // no port
		"   3: 0100007F:D4310 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1",                // 5-digit port
		"   3: 0100007F:D431 0100007G:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1",                 // bad hex
		"   3: 00007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1",                   // 6-digit IP
		"   3: 000000000000000001000000:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 1", // 24-digit IP
		"   3: 0100007F:D431 0100007F:1F90 XY 00000000:00000000 00:00000000 00000000  1000 0 1",                 // bad state
		"   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  -1 0 1",                   // negative uid
		"   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  4294967296 0 1",           // uid overflows 32 bits
		"   3: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 inode",             // bad inode
	} {
		if e, err := parseProcNetTCPLine(line, binary.LittleEndian); err == nil {
			t.Errorf("parseProcNetTCPLine(%q) = %+v, want an error", line, e)
		}
	}
}

// TestLoopbackPeerScanSkipsDeadRows checks that rows no process holds (inode 0,
// where the kernel prints uid 0) and TIME_WAIT rows never supply the uid.
func TestLoopbackPeerScanSkipsDeadRows(t *testing.T) {
	// The file is in the machine's own byte order, like the kernel's.
	hexIP := func(a string) string {
		b := netip.MustParseAddr(a).As4()
		return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b[:]))
	}
	row := func(sl int, local, remote string, lport, rport uint16, st, uid int, inode uint64) string {
		return fmt.Sprintf("%4d: %s:%04X %s:%04X %02X 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 0000000000000000 20 4 30 10 -1",
			sl, hexIP(local), lport, hexIP(remote), rport, st, uid, inode)
	}
	want := procNetTCPEntry{Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:8080")}
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
	write := func(lines ...string) string {
		path := filepath.Join(t.TempDir(), "tcp")
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	path := write(header,
		row(0, "0.0.0.0", "0.0.0.0", 8080, 0, 0x0A, 1000, 100),         // the listener
		row(1, "127.0.0.1", "127.0.0.1", 8080, 40000, 0x01, 1000, 101), // the accepted end
		row(2, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x06, 0, 0),      // stale TIME_WAIT
		row(3, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x07, 0, 0),      // closed, orphaned
		"garbage that the kernel does not print",
		row(4, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x01, 65534, 102), // the peer
		row(5, "127.0.0.1", "127.0.0.1", 40001, 8080, 0x01, 1000, 103),  // someone else
	)
	uid, found, err := scanProcNetTCP(path, want)
	if err != nil || !found || uid != 65534 {
		t.Errorf("scanProcNetTCP = %d, %v, %v; want 65534, true, nil", uid, found, err)
	}

	path = write(header,
		row(2, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x06, 0, 0),
		row(3, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x08, 0, 0),
	)
	if uid, found, err := scanProcNetTCP(path, want); err != nil || found {
		t.Errorf("scanProcNetTCP with only dead rows = %d, %v, %v; want not found", uid, found, err)
	}

	path = write(header,
		row(4, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x01, 65534, 102),
		row(5, "127.0.0.1", "127.0.0.1", 40000, 8080, 0x01, 1000, 103),
	)
	if uid, found, err := scanProcNetTCP(path, want); err == nil {
		t.Errorf("scanProcNetTCP with two live owners = %d, %v, nil; want an error", uid, found)
	}
}

// acceptOne accepts one connection on l, made by dial, with a deadline.
func acceptOne(t *testing.T, l net.Listener, dial func() (net.Conn, error)) (server, client net.Conn) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		accepted <- result{c, err}
	}()
	client, err := dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case r := <-accepted:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c, client
	case <-time.After(10 * time.Second):
		t.Fatal("accept: timed out")
	}
	return nil, nil
}

func checkSameUID(t *testing.T, c net.Conn) {
	t.Helper()
	uid, err := LoopbackPeerUID(c)
	if err != nil {
		t.Fatalf("LoopbackPeerUID: %v", err)
	}
	if uid != os.Getuid() {
		t.Errorf("LoopbackPeerUID = %d, want os.Getuid() = %d", uid, os.Getuid())
	}
	if err := CheckLoopbackPeer(c); err != nil {
		t.Errorf("CheckLoopbackPeer: %v", err)
	}
}

func TestLoopbackPeerSameUID(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, _ := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("tcp4", l.Addr().String()) })
	checkSameUID(t, srv)
}

func TestLoopbackPeerSameUIDIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("listen on IPv6 loopback (the kernel must have IPv6 for this test): %v", err)
	}
	defer l.Close()
	srv, _ := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("tcp6", l.Addr().String()) })
	checkSameUID(t, srv)
}

// TestLoopbackPeerSameUIDV4Mapped connects an IPv4 client to an IPv6 socket
// bound to ::ffff:127.0.0.1, so that the accepted end has v4-mapped
// addresses (in /proc/net/tcp6) and the peer is in /proc/net/tcp.
func TestLoopbackPeerSameUIDV4Mapped(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("IPv6 socket (the kernel must have IPv6 for this test): %v", err)
	}
	f := os.NewFile(uintptr(fd), "v4-mapped listener")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatalf("IPV6_V6ONLY: %v", err)
	}
	sa := &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatalf("binding ::ffff:127.0.0.1: %v", err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	srv, _ := acceptOne(t, l, func() (net.Conn, error) {
		return net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	})
	if a := srv.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); !a.Is4In6() {
		t.Logf("accepted end's local address %s is not v4-mapped; the test covers less than meant", a)
	}
	checkSameUID(t, srv)
}

func TestLoopbackPeerNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := LoopbackPeerUID(a); err == nil {
		t.Error("LoopbackPeerUID(net.Pipe) succeeded, want an error")
	}
	if err := CheckLoopbackPeer(a); err == nil {
		t.Error("CheckLoopbackPeer(net.Pipe) succeeded, want an error")
	}
}

// helperDialEnv tells TestHelperDialer, run in a child process, where to
// connect.
const helperDialEnv = "KLOOP_TEST_PEERTCP_DIAL"

// TestHelperDialer is not a test: TestLoopbackPeerOtherUID runs the test
// binary as another user with only this test selected and helperDialEnv set.
// It connects, then holds the connection open until the other end closes
// it, so that its socket stays listed while the parent checks it.
func TestHelperDialer(t *testing.T) {
	addr := os.Getenv(helperDialEnv)
	if addr == "" {
		return
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("helper uid %d: %v", os.Getuid(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("helper uid %d: waiting for the close: %v", os.Getuid(), err)
	}
}

// runnableByOthers reports whether a user with no special relation to path's
// owners can execute it: others may search every directory on the way and
// read and execute the file.
func runnableByOthers(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o005 != 0o005 {
		return false
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil || di.Mode().Perm()&0o001 == 0 {
			return false
		}
		if dir == filepath.Dir(dir) {
			return true
		}
	}
}

// binaryForOthers returns a path of this test binary that other users can
// run, copying it into a fresh 0755 directory if go test's own is private.
func binaryForOthers(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	if self, err = filepath.Abs(self); err != nil {
		t.Fatal(err)
	}
	if runnableByOthers(self) {
		return self
	}
	// Not t.TempDir: it makes 0700 directories.
	dir, err := os.MkdirTemp("", "kloop-peertcp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	copyPath := filepath.Join(dir, filepath.Base(self))
	dst, err := os.OpenFile(copyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(copyPath, 0o755); err != nil { // in case of a umask
		t.Fatal(err)
	}
	if !runnableByOthers(copyPath) {
		t.Fatalf("cannot put the test binary where other users can run it: %s is not reachable (TMPDIR=%q)", copyPath, os.Getenv("TMPDIR"))
	}
	return copyPath
}

// TestLoopbackPeerOtherUID has a process running as nobody connect and
// checks that CheckLoopbackPeer refuses it by name.
func TestLoopbackPeerOtherUID(t *testing.T) {
	const nobody = 65534
	if os.Getuid() != 0 {
		t.Fatalf("this test runs a helper process as uid %d and needs root (running as uid %d; CI runs as root)", nobody, os.Getuid())
	}
	bin := binaryForOthers(t)

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	var out bytes.Buffer
	cmd := exec.Command(bin, "-test.run=^TestHelperDialer$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperDialEnv+"="+l.Addr().String())
	cmd.Dir = filepath.Dir(bin)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobody, Gid: nobody},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper as uid %d: %v", nobody, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()

	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		accepted <- result{c, err}
	}()
	var srv net.Conn
	select {
	case r := <-accepted:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		srv = r.c
	case err := <-exited:
		exited <- err // for the deferred wait
		t.Fatalf("the helper exited (%v) without connecting:\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the helper did not connect within 30s")
	}

	uid, uidErr := LoopbackPeerUID(srv)
	checkErr := CheckLoopbackPeer(srv)
	srv.Close() // lets the helper finish

	if uidErr != nil {
		t.Errorf("LoopbackPeerUID: %v", uidErr)
	} else if uid != nobody {
		t.Errorf("LoopbackPeerUID = %d, want %d", uid, nobody)
	}
	if checkErr == nil {
		t.Fatalf("CheckLoopbackPeer accepted a connection from uid %d", nobody)
	}
	t.Logf("CheckLoopbackPeer: %v", checkErr)
	if !strings.Contains(checkErr.Error(), "uid 65534") {
		t.Errorf("CheckLoopbackPeer error %q does not name uid 65534", checkErr)
	}

	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("the helper failed: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the helper did not exit after the connection closed:\n%s", out.String())
	}
}
