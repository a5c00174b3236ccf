package agent_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is a minimal HTTP/2 client on a connection upgraded from HTTP/1.1,
// which Go's HTTP clients cannot do, the way curl --http2 does for http://.
type h2Conn struct {
	conn   net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	next   uint32
}

// dialH2CUpgrade sends GET path with header as an h2c upgrade and returns the
// connection and the body of that first response.
func dialH2CUpgrade(t *testing.T, addr, path string, header http.Header) (*h2Conn, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	// SETTINGS_MAX_CONCURRENT_STREAMS = 100.
	settings := base64.RawURLEncoding.EncodeToString([]byte{0, 3, 0, 0, 0, 100})
	var extra strings.Builder
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&extra, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: %s\r\n%s\r\n", path, settings, extra.String())
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s; want 101", resp.Status)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{conn: conn, fr: http2.NewFramer(conn, br), next: 3}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.encBuf)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h, strings.TrimSpace(h.read(t, 1))
}

// get sends a request on a new stream and returns the response body.
func (h *h2Conn) get(t *testing.T, path string, header http.Header) string {
	t.Helper()
	h.encBuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "orders"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for k, vs := range header {
		for _, v := range vs {
			h.enc.WriteField(hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.encBuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(h.read(t, id))
}

// read collects the response on stream id, answering what the server asks.
func (h *h2Conn) read(t *testing.T, id uint32) string {
	t.Helper()
	var body bytes.Buffer
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("read h2 frame for stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("server sent GOAWAY: %v", f.ErrCode)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				t.Fatalf("stream %d reset: %v", id, f.ErrCode)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); s != "" && s != "200" {
					t.Fatalf("stream %d: status %s", id, s)
				}
				if f.StreamEnded() {
					return body.String()
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				body.Write(f.Data())
				if n := len(f.Data()); n > 0 {
					h.fr.WriteWindowUpdate(0, uint32(n))
				}
				if f.StreamEnded() {
					return body.String()
				}
			}
		}
	}
}
