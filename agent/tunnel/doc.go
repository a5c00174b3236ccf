// Package tunnel is the protocol between the kloop daemon and a traffic
// agent: one authenticated TCP connection per pod (the daemon reaches the
// agent's loopback control port through Kubernetes port-forward), with many
// streams multiplexed on it by yamux.
//
// A connection opens with the client writing "KLOOP-TUNNEL\r\n" and a hello frame
// (protocol versions it speaks, the token); the agent answers with a welcome
// frame (the chosen version and its ports) or an error, compares tokens in
// constant time, and logs refusals without the token. A frame is a 4-byte
// big-endian length and a JSON object. Then yamux runs with keep-alives every
// 2 s; a peer that does not answer within 3 s ends the tunnel.
//
// Every stream starts with a kind byte and a header frame:
//
//   - control (daemon to agent): set or clear the intercept, read stats; one
//     request and one response per stream.
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
