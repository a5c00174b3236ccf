// Package capture records the HTTP/1.x exchanges that intercepted traffic
// carries to the local process: for `kloop requests`, and for `kloop
// replay`, which sends a recorded request again to the new build after a
// save and compares the answers.
//
// Wrap tees the bytes of one tunneled connection to a parser that runs
// beside it, so the traffic never waits for the recording: a parser that
// falls behind, or bytes that are not HTTP/1.x (h2c, TLS, any TCP
// protocol), end the recording of that connection, never the connection.
// A Store keeps the last N exchanges in memory only (bodies capped at
// MaxBody); List masks credentials (Authorization, Proxy-Authorization,
// Cookie, Set-Cookie) in everything it returns, and only Get, for a replay,
// returns them.
package capture
