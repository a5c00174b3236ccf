package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

const (
	socksVersion    = 5
	methodNoAuth    = 0x00
	methodUserPass  = 0x02
	methodNoneFound = 0xff

	cmdConnect = 1

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4

	repSucceeded          = 0
	repGeneralFailure     = 1
	repHostUnreachable    = 4
	repConnectionRefused  = 5
	repCommandUnsupported = 7
	repAddressUnsupported = 8
)

// socksHandshakeTimeout bounds the greeting and request, not the dial.
const socksHandshakeTimeout = 30 * time.Second

// ServeSOCKS5 serves SOCKS5 CONNECT on ln until ctx is done, then closes ln
// and every connection and returns once they have ended.
func ServeSOCKS5(ctx context.Context, ln net.Listener, dial DialFunc, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var cs conns
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		cs.closeAll()
	})
	defer stop()
	defer cs.wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			cs.closeAll()
			return fmt.Errorf("socks5 proxy: accept: %w", err)
		}
		if !cs.add(conn) {
			conn.Close()
			continue
		}
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			defer cs.remove(conn)
			serveSOCKS(ctx, conn, dial, &o)
		}()
	}
}

func serveSOCKS(ctx context.Context, conn net.Conn, dial DialFunc, o *options) {
	conn.SetDeadline(time.Now().Add(socksHandshakeTimeout))
	addr, err := socksHandshake(conn, o)
	if err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	up, err := dial(ctx, "tcp", addr)
	if err != nil {
		socksReply(conn, dialReplyCode(err))
		conn.Close()
		return
	}
	if err := socksReply(conn, repSucceeded); err != nil {
		up.Close()
		conn.Close()
		return
	}
	tunnel.Splice(ctx, conn, up)
}

// socksHandshake negotiates the method and reads a CONNECT request; it
// answers unsupported requests itself.
func socksHandshake(conn net.Conn, o *options) (string, error) {
	var head [2]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return "", err
	}
	if head[0] != socksVersion {
		return "", fmt.Errorf("socks version %d, only 5 is served", head[0])
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(conn, methods); err != nil {
		return "", err
	}
	want := byte(methodNoAuth)
	if o.authRequired() {
		want = methodUserPass
	}
	chosen := byte(methodNoneFound)
	for _, m := range methods {
		if m == want {
			chosen = want
		}
	}
	if _, err := conn.Write([]byte{socksVersion, chosen}); err != nil {
		return "", err
	}
	if chosen == methodNoneFound {
		return "", errors.New("no acceptable authentication method")
	}
	if chosen == methodUserPass {
		if err := socksUserPass(conn, o); err != nil {
			return "", err
		}
	}

	var req [4]byte
	if _, err := io.ReadFull(conn, req[:]); err != nil {
		return "", err
	}
	if req[0] != socksVersion {
		return "", fmt.Errorf("socks version %d in request", req[0])
	}
	var host string
	switch req[3] {
	case atypIPv4, atypIPv6:
		ip := make([]byte, net.IPv4len)
		if req[3] == atypIPv6 {
			ip = make([]byte, net.IPv6len)
		}
		if _, err := io.ReadFull(conn, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(conn, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		socksReply(conn, repAddressUnsupported)
		return "", fmt.Errorf("address type %d", req[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(conn, port[:]); err != nil {
		return "", err
	}
	if req[1] != cmdConnect {
		socksReply(conn, repCommandUnsupported)
		return "", fmt.Errorf("command %d, only CONNECT is served", req[1])
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

// socksUserPass runs RFC 1929 username/password authentication.
func socksUserPass(conn net.Conn, o *options) error {
	var head [2]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return err
	}
	user := make([]byte, head[1])
	if _, err := io.ReadFull(conn, user); err != nil {
		return err
	}
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return err
	}
	pass := make([]byte, n[0])
	if _, err := io.ReadFull(conn, pass); err != nil {
		return err
	}
	if head[0] != 1 || !o.check(string(user), string(pass)) {
		conn.Write([]byte{1, 1})
		return errors.New("wrong proxy credentials")
	}
	_, err := conn.Write([]byte{1, 0})
	return err
}

func socksReply(conn net.Conn, code byte) error {
	_, err := conn.Write([]byte{socksVersion, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

func dialReplyCode(err error) byte {
	var dnsErr *net.DNSError
	switch {
	// Errors from the far side of a tunnel arrive as text.
	case errors.Is(err, syscall.ECONNREFUSED), strings.Contains(err.Error(), "connection refused"):
		return repConnectionRefused
	case errors.As(err, &dnsErr), strings.Contains(err.Error(), "no such host"):
		return repHostUnreachable
	}
	return repGeneralFailure
}
