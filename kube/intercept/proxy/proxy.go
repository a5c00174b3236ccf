// Package proxy serves the daemon's outbound listeners for the developer's
// local process: an HTTP proxy (CONNECT and plain forwarding, for HTTP_PROXY
// and HTTPS_PROXY) and a SOCKS5 proxy (for ALL_PROXY). Every connection is
// dialed by a DialFunc, normally tunnel.Client.DialCluster, so it leaves from
// inside the intercepted pod and cluster names like users:8080 resolve.
//
// Listeners should be bound to 127.0.0.1. WithCredentials makes both proxies
// demand a user and password (Proxy-Authorization Basic, RFC 1929), which
// keeps other users of a shared machine out; clients take them from the proxy
// URL, e.g. ALL_PROXY=socks5h://kloop:SECRET@127.0.0.1:PORT. Use socks5h
// (the proxy resolves names): with plain socks5 some clients, curl among
// them, resolve locally, where cluster names do not exist. Go's clients send
// names either way.
package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"sync"
)

// DialFunc connects to addr from wherever the proxy's traffic should leave.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Option adjusts a proxy.
type Option func(*options)

type options struct {
	user, password string
}

// WithCredentials requires clients to authenticate with user and password.
func WithCredentials(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

func (o *options) authRequired() bool { return o.user != "" || o.password != "" }

func (o *options) check(user, password string) bool {
	a := sha256.Sum256([]byte(user + "\x00" + password))
	b := sha256.Sum256([]byte(o.user + "\x00" + o.password))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// conns tracks the connections a proxy serves so it can end them on close.
type conns struct {
	mu     sync.Mutex
	set    map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (c *conns) add(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.set == nil {
		c.set = map[net.Conn]struct{}{}
	}
	c.set[conn] = struct{}{}
	return true
}

func (c *conns) remove(conn net.Conn) {
	c.mu.Lock()
	delete(c.set, conn)
	c.mu.Unlock()
}

func (c *conns) closeAll() {
	c.mu.Lock()
	c.closed = true
	for conn := range c.set {
		conn.Close()
	}
	c.mu.Unlock()
}
