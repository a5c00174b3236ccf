package capture

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkKeepAliveRequest is one GET on a kept-alive loopback connection
// to a local server, straight ("direct", the baseline) and through Wrap
// ("recorded"), in the same run: what recording costs a request.
func BenchmarkKeepAliveRequest(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"order":{"id":"1","item":"keyboard"}}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	req := []byte("GET /orders/1 HTTP/1.1\r\nHost: orders\r\nUser-Agent: bench\r\n\r\n")
	run := func(b *testing.B, wrap bool) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s := NewStore(0)
		if wrap {
			c = Wrap(c, s, "deployment/orders", nil)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, false) })
	b.Run("recorded", func(b *testing.B) { run(b, true) })
}
