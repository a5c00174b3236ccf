package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/kloop/kloop/debugadapter"
	"github.com/kloop/kloop/session"
)

// dapPreamble starts the first line `kloop dap` sends on the daemon socket, before
// any DAP: the daemon serves the rest of the connection as a debug session instead of
// LSP. No LSP message starts with it (they start with a Content-Length header).
const dapPreamble = "KLOOP-DAP "

// dapAccepted is the daemon's answer to a DAP hello it accepts.
const dapAccepted = "KLOOP-DAP ok\n"

// maxHelloBytes bounds the hello line (the editor's environment is in it).
const maxHelloBytes = 1 << 20

// DAPHello is what `kloop dap` tells the daemon about the editor it serves: where
// relative paths in the launch configuration start, and the environment the program
// and its build inherit (as if the editor had started the debugger itself).
type DAPHello struct {
	Dir string   `json:"dir"`
	Env []string `json:"env,omitempty"`
}

// DialDAP connects to the daemon (starting one when none answers), opens a debug
// session for hello and returns the connection to speak DAP on.
func DialDAP(ctx context.Context, opts DialOptions, hello DAPHello) (net.Conn, error) {
	conn, err := Dial(ctx, opts)
	if err != nil {
		return nil, err
	}
	line, err := json.Marshal(hello)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("encode the debug session's hello: %w", err)
	}
	if _, err := conn.Write(append(append([]byte(dapPreamble), line...), '\n')); err != nil {
		conn.Close()
		return nil, fmt.Errorf("open a debug session with the daemon: %w", err)
	}
	br := bufio.NewReader(conn)
	answer, err := br.ReadString('\n')
	if answer == dapAccepted {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	// A refusal is an LSP error frame (see daemon.refuse): show its message.
	rest, _ := io.ReadAll(io.LimitReader(br, 64<<10))
	conn.Close()
	text := strings.TrimSpace(answer + string(rest))
	if i := strings.Index(text, "{"); i >= 0 {
		var frame struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal([]byte(text[i:]), &frame) == nil && frame.Error.Message != "" {
			return nil, errors.New(frame.Error.Message)
		}
	}
	if err != nil && text == "" {
		return nil, fmt.Errorf("the daemon on %s closed the connection before accepting the debug session: %w", opts.Paths.Socket, err)
	}
	return nil, fmt.Errorf("the daemon on %s did not accept the debug session: %q", opts.Paths.Socket, text)
}

// bufferedConn reads through the reader that already consumed the hello's answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the connection, so the daemon sees the editor's end.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// serveClient serves one accepted connection: a debug session when it opens with the
// DAP hello, else LSP.
func (d *daemon) serveClient(ctx context.Context, c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	conn := &bufferedConn{Conn: c, r: br}
	if head, err := br.Peek(len(dapPreamble)); err == nil && string(head) == dapPreamble {
		return serveDAP(ctx, conn, br, d.mgr, d.log)
	}
	return ServeConn(ctx, conn, ConnOptions{
		Manager:         d.mgr,
		Logger:          d.log,
		Version:         d.opts.Version,
		MaxMessageBytes: d.opts.MaxMessageBytes,
		StopDaemon:      func() { d.shutdown("asked to stop") },
	})
}

// serveDAP reads the hello and serves the debug session on the rest of conn.
func serveDAP(ctx context.Context, conn net.Conn, br *bufio.Reader, mgr *session.Manager, log *slog.Logger) error {
	defer conn.Close()
	line, err := readLine(br, maxHelloBytes)
	if err != nil {
		return fmt.Errorf("read the debug session's hello: %w", err)
	}
	var hello DAPHello
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, dapPreamble)), &hello); err != nil {
		return fmt.Errorf("the debug session's hello is not JSON: %w", err)
	}
	if _, err := io.WriteString(conn, dapAccepted); err != nil {
		return fmt.Errorf("accept the debug session: %w", err)
	}
	log.Info("debug session opened", "dir", hello.Dir)
	err = debugadapter.New(debugadapter.Options{
		Manager: mgr,
		Dir:     hello.Dir,
		Env:     hello.Env,
		Logger:  log.With("debug", hello.Dir),
	}).Serve(ctx, conn)
	log.Info("debug session ended", "dir", hello.Dir, "err", err)
	return err
}

// readLine reads one line of at most limit bytes.
func readLine(br *bufio.Reader, limit int) (string, error) {
	var sb strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		sb.Write(chunk)
		if sb.Len() > limit {
			return "", fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return strings.TrimSuffix(sb.String(), "\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// ForwardDAP is `kloop dap`: it relays the editor's stdio (or one TCP connection)
// to a debug session in the daemon and returns when either side ends.
func ForwardDAP(ctx context.Context, in io.Reader, out io.Writer, opts DialOptions, hello DAPHello) error {
	conn, err := DialDAP(ctx, opts, hello)
	if err != nil {
		return err
	}
	defer conn.Close()
	var once sync.Once
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		// The editor is gone: the daemon ends the session (and what it made).
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		if err != nil {
			once.Do(func() { done <- fmt.Errorf("relay editor to daemon: %w", err) })
		}
	}()
	go func() {
		_, err := io.Copy(out, conn)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			err = fmt.Errorf("relay daemon to editor: %w", err)
		} else {
			err = nil
		}
		once.Do(func() { done <- err })
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}
