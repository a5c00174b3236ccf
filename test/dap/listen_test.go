package dap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestListenRefusesOtherUsers: `kloop dap --listen` is on a loopback port any local
// user can reach, and a debug session runs programs as the developer. A connection
// from another uid (nobody, through setpriv) is told why and refused; the developer's
// own connection is served afterwards.
func TestListenRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatalf("this test connects as another user and needs root (running as uid %d; CI runs as root)", os.Getuid())
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to connect as another user: %v", err)
	}
	cmd := exec.Command(kloopBin, "dap", "--listen", "127.0.0.1:0")
	cmd.Dir = t.TempDir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the listening line: %v (stderr: %s)", err, stderr.String())
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "DAP server listening at:"))
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listening line %q: %v", line, err)
	}

	// nobody connects and reads what it is told.
	other := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && timeout 20 cat <&3", host, port))
	refusal, err := other.CombinedOutput()
	if err != nil {
		t.Fatalf("connect as nobody: %v\n%s", err, refusal)
	}
	if !strings.Contains(string(refusal), "refused a connection from uid 65534") || !strings.Contains(string(refusal), `"terminated"`) {
		t.Errorf("nobody was told %q; want the refusal naming uid 65534 and a terminated event", refusal)
	}

	// The developer is served: initialize gets the adapter's answer.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("the developer's connection after the refusal: %v (stderr: %s)", err, stderr.String())
	}
	defer conn.Close()
	body := `{"seq":1,"type":"request","command":"initialize","arguments":{"adapterID":"kloop","pathFormat":"path","linesStartAt1":true,"columnsStartAt1":true}}`
	fmt.Fprintf(conn, "Content-Length: %d\r\n\r\n%s", len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(waitLong))
	answer, err := readFrame(bufio.NewReader(conn))
	if err != nil {
		t.Fatalf("read the answer to initialize: %v (stderr: %s)", err, stderr.String())
	}
	if !strings.Contains(answer, `"command":"initialize"`) || !strings.Contains(answer, `"success":true`) {
		t.Errorf("initialize answered %s", answer)
	}
	if !strings.Contains(stderr.String(), "uid 65534") {
		t.Errorf("kloop dap's stderr does not record the refusal: %q", stderr.String())
	}
}

// readFrame reads one Content-Length framed message.
func readFrame(r *bufio.Reader) (string, error) {
	n := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length:"); ok {
			if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err != nil {
				return "", fmt.Errorf("header %q: %w", line, err)
			}
		}
	}
	if n < 0 {
		return "", fmt.Errorf("no Content-Length")
	}
	buf := make([]byte, n)
	_, err := io.ReadFull(r, buf)
	return string(buf), err
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
