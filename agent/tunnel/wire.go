package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// Version is the protocol version this build speaks. The client offers the
// versions it knows and the agent picks one, so a newer daemon can still talk
// to an agent image that was injected by an older kloop. Version 2 proves the
// secret both ways (version 1 sent the token itself, to whoever listened on
// the control port) and names the holder of each tunnel. Version 3 adds
// the pause and resume control operations (the laptop's process stopped at
// a breakpoint, or running again). Version 4 adds filters beyond one
// header (Intercept.Filter: path prefix, path regex, methods, several
// headers, all or any of them) and the rule's Since. Version 5 adds mirror
// intercepts (Intercept.Mirror): the app answers every caller and the
// laptop gets copies, marked by the MirrorHeader request header.
const Version = 5

// minVersion is the oldest version this build still speaks: an agent
// injected by a kloop of version 2 keeps working, without pause. Version 1
// is refused, since it gave the token away.
const minVersion = 2

// speaks reports whether this build speaks protocol version v.
func speaks(v int) bool { return v >= minVersion && v <= Version }

// versions is what a client offers, newest first.
func versions() []int {
	var out []int
	for v := Version; v >= minVersion; v-- {
		out = append(out, v)
	}
	return out
}

// highestCommon is the newest version both this build and a peer offering
// offered speak, or 0.
func highestCommon(offered []int) int {
	best := 0
	for _, v := range offered {
		if speaks(v) && v > best {
			best = v
		}
	}
	return best
}

// magic opens every tunnel connection so that an agent reached by something
// other than kloop (a browser, a stray port-forward) fails fast and clearly.
// It ends in CRLF so that an HTTP server reached by mistake answers at once.
const magic = "KLOOP-TUNNEL\r\n"

// maxFrame bounds every JSON frame; real frames are a few hundred bytes.
const maxFrame = 1 << 20

// handshakeTimeout bounds the whole hello/welcome exchange when the caller's
// context has no earlier deadline.
const handshakeTimeout = 10 * time.Second

// Keep-alive timing: a tunnel whose peer stops answering is declared dead
// after at most keepAliveInterval+keepAliveTimeout, which is how long the
// agent keeps sending traffic to a laptop that went away.
const (
	keepAliveInterval = 2 * time.Second
	keepAliveTimeout  = 3 * time.Second
)

// Stream kinds: the first byte written on every yamux stream.
const (
	kindControl byte = 1 // daemon -> agent: one request, one response
	kindDial    byte = 2 // daemon -> agent: dial HOST:PORT inside the pod
	kindInbound byte = 3 // agent -> daemon: a connection for the laptop
)

// Protocols an intercepted port or an inbound stream can carry.
const (
	ProtoTCP  = "tcp"  // opaque bytes; routed per connection
	ProtoHTTP = "http" // HTTP/1.1 or h2c; routed per request
	ProtoH2C  = "h2c"  // inbound stream that carries HTTP/2 prior-knowledge
)

// hello opens the handshake. It carries no secret: the client proves the
// token only after the agent has proved it (see challenge).
type hello struct {
	Versions []int `json:"versions"`
	// Nonce is the client's fresh random challenge to the agent.
	Nonce []byte `json:"nonce"`
	// Holder names the developer (user@host) and HolderID their kloop
	// installation: the agent keeps one tunnel and one rule per HolderID.
	Holder   string `json:"holder,omitempty"`
	HolderID string `json:"holderID,omitempty"`
}

// challenge is the agent's answer to hello: its own nonce and its proof
// that it holds the token, bound to both nonces.
type challenge struct {
	Version int    `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
	Nonce   []byte `json:"nonce,omitempty"`
	Proof   []byte `json:"proof,omitempty"`
}

// clientProof is the client's proof that it holds the token, sent only
// once the agent's proof checked out.
type clientProof struct {
	Proof []byte `json:"proof"`
}

type welcome struct {
	Version int       `json:"version,omitempty"`
	Error   string    `json:"error,omitempty"`
	Agent   AgentInfo `json:"agent"`
}

// AgentInfo is what an agent tells a client about itself at handshake.
type AgentInfo struct {
	// Pod is the pod name, when the agent was given one (POD_NAME).
	Pod string `json:"pod,omitempty"`
	// Ports lists the forwarded ports, in flag order.
	Ports []PortInfo `json:"ports"`
}

// PortInfo describes one forwarded port of an agent.
type PortInfo struct {
	// Port is the app container's original port: the number the user names
	// and the number inbound streams carry.
	Port int `json:"port"`
	// ListenPort is the agent's own port that the Service now targets.
	ListenPort int `json:"listenPort"`
	// Protocol is ProtoHTTP or ProtoTCP.
	Protocol string `json:"protocol"`
}

// inboundHeader follows kindInbound.
type inboundHeader struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Remote   string `json:"remote,omitempty"`
}

// dialHeader follows kindDial.
type dialHeader struct {
	Network string `json:"network"`
	Addr    string `json:"addr"`
}

// reply answers a dial or inbound header: empty Error means the stream is now
// a raw byte pipe.
type reply struct {
	Error string `json:"error,omitempty"`
}

type controlRequest struct {
	Op        string     `json:"op"` // "set", "clear", "stats"; since version 3 "pause", "resume"
	Intercept *Intercept `json:"intercept,omitempty"`
	// HoldMillis is, for "pause", how long a request of a global intercept
	// waits for the laptop before the app answers it; 0 is the agent's
	// default.
	HoldMillis int64 `json:"holdMillis,omitempty"`
}

type controlResponse struct {
	Error string `json:"error,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
}

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// readFrame reads exactly one frame and nothing more, so that the bytes after
// it stay in the connection for whoever pipes it next.
func readFrame(r io.Reader, v any) error {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return err
	}
	if string(size[:]) == "HTTP" {
		return errors.New("the peer answered in HTTP; it does not speak the kloop tunnel protocol")
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes is larger than the %d allowed", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// writeKindFrame writes a stream's kind byte and header in one write, so a
// stream's setup costs one yamux data frame.
func writeKindFrame(w io.Writer, kind byte, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 5+len(body))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:], uint32(len(body)))
	copy(buf[5:], body)
	_, err = w.Write(buf)
	return err
}

func yamuxConfig(log *slog.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = keepAliveInterval
	cfg.ConnectionWriteTimeout = keepAliveTimeout
	// A stream we closed whose peer never answers is reset after this; it
	// only matters for peers that misbehave.
	cfg.StreamCloseTimeout = 30 * time.Second
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return cfg
}

// ErrTokenRefused is returned by Dial when the agent does not accept the token.
var ErrTokenRefused = errors.New("the agent refused the token")

// ErrAgentUnproven is returned by Dial when whatever answers on the control
// port cannot prove it holds the intercept's token: it is not this
// intercept's agent, and nothing that grants access was sent to it.
var ErrAgentUnproven = errors.New("the peer on the agent's control port did not prove it holds the intercept's secret")

// ErrClosed is returned by calls on a tunnel that has ended.
var ErrClosed = errors.New("tunnel closed")

// yamuxHeaderSize is the length of a yamux frame header.
const yamuxHeaderSize = 12

// coalescingConn saves a syscall (and a TCP segment through the
// port-forward) per yamux data frame. yamux v0.1.2 writes each frame's
// 12-byte header and its body in two Writes from its single send loop; the
// header of a data frame that has a body is held and sent together with that
// body. Every other write, including header-only frames such as keep-alive
// pings and window updates, goes out at once.
type coalescingConn struct {
	net.Conn
	held [yamuxHeaderSize]byte
	has  bool
	buf  []byte
}

func (c *coalescingConn) Write(b []byte) (int, error) {
	if !c.has && len(b) == yamuxHeaderSize && b[1] == 0 /* data */ && binary.BigEndian.Uint32(b[8:]) > 0 {
		copy(c.held[:], b)
		c.has = true
		return len(b), nil
	}
	if !c.has {
		return c.Conn.Write(b)
	}
	c.has = false
	c.buf = append(append(c.buf[:0], c.held[:]...), b...)
	n, err := c.Conn.Write(c.buf)
	if n >= yamuxHeaderSize {
		n -= yamuxHeaderSize
	} else {
		n = 0
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not pin a large buffer after a burst
	}
	return n, err
}
