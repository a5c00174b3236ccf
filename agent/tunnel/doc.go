// Package tunnel is the protocol between the kloop daemon and a traffic
// agent: one authenticated TCP connection per pod (the daemon reaches the
// agent's loopback control port through Kubernetes port-forward), with many
// streams multiplexed on it by yamux.
//
// A connection opens with a handshake in which each side proves it holds the
// intercept's token without sending it, the agent first:
//
//  1. the client writes "KLOOP-TUNNEL\r\n" and a hello frame: the protocol
//     versions it speaks, a fresh 32-byte nonce, and the holder (user@host)
//     and holder ID of its kloop installation;
//  2. the agent answers with a challenge frame: the chosen version, a nonce
//     of its own, and HMAC-SHA256(token, "kloop-tunnel-agent" 0x00 client
//     nonce agent nonce);
//  3. the client checks that proof and, only if it holds, sends its own
//     (the same HMAC under role "kloop-tunnel-client"); otherwise it stops
//     with ErrAgentUnproven, having sent nothing that grants access, so a
//     process that binds the control port first learns nothing usable;
//  4. the agent checks the client's proof in constant time and answers with
//     a welcome frame (its ports) or an error (ErrTokenRefused), logging
//     refusals without any secret.
//
// The agent picks the newest version both sides speak (this build: 5, and
// 2 to 4 for agents and daemons of older kloops); a daemon asks an older
// agent for nothing it cannot do: SetPaused returns ErrPauseUnsupported
// before version 3, and SetIntercept with a filter beyond one header
// returns ErrFilterUnsupported before version 4 (a one-header rule still
// travels in the old form, which every version takes), and a mirror
// intercept returns ErrMirrorUnsupported before version 5.
//
// A frame is a 4-byte big-endian length and a JSON object. Then yamux runs
// with keep-alives every 2 s; a peer that does not answer within 3 s ends the
// tunnel. The agent keeps one tunnel per holder ID: a new tunnel of the same
// holder replaces its old one (a restarted daemon), others are untouched.
//
// Every stream starts with a kind byte and a header frame:
//
//   - control (daemon to agent): set or clear this holder's intercept rule,
//     read stats (this holder's counts), and since version 3 pause or
//     resume (the holder's process is stopped at a breakpoint, or runs
//     again); one request and one response per stream.
//   - dial (daemon to agent): connect to HOST:PORT from inside the pod; the
//     agent replies with an error or success, then the stream is a byte pipe.
//     This backs the daemon's HTTP proxy and SOCKS5 listener (kube/intercept/proxy).
//   - inbound (agent to daemon): a connection for the laptop, naming the app
//     port and what flows on it: "tcp" for a whole client connection spliced
//     as is (any protocol), "http" or "h2c" for a connection of the agent's
//     per-request router, which sends HTTP/1.1 or HTTP/2 prior knowledge. To
//     the daemon all are byte pipes to its local process, so the stream needs
//     no already-read bytes. The daemon dials its local process and replies;
//     on an error reply the agent sends the traffic to the app instead.
//
// The daemon side is Client (Dial, SetIntercept, ServeInbound, DialCluster);
// the agent side is ServerConn (Accept, Serve, OpenInbound).
package tunnel
