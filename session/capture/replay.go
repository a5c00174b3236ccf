package capture

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Send sends the recorded request e again on conn (a connection to the
// local process) as it was sent the first time, credentials included, and
// returns the answer, its body capped at MaxBody, and how long it took.
func Send(ctx context.Context, conn net.Conn, e Exchange) (*Response, time.Duration, error) {
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	host := e.Host
	if host == "" {
		host = "localhost"
	}
	req, err := http.NewRequestWithContext(ctx, e.Method, "http://"+host+e.Target, strings.NewReader(e.Body))
	if err != nil {
		return nil, 0, fmt.Errorf("rebuild request %d: %w", e.ID, err)
	}
	if e.BodyTruncated {
		return nil, 0, fmt.Errorf("request %d had a body over %d KiB, of which only the start was kept; it cannot be sent again whole", e.ID, MaxBody>>10)
	}
	req.Header = e.Header.Clone()
	req.Header.Del("Connection")
	req.Header.Del("Content-Length")
	req.ContentLength = int64(len(e.Body))
	req.Close = true
	start := time.Now()
	if err := req.Write(conn); err != nil {
		return nil, 0, fmt.Errorf("send request %d to the local process: %w", e.ID, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, 0, fmt.Errorf("read the local process's answer to request %d: %w", e.ID, err)
	}
	took := time.Since(start)
	body, truncated, err := readCapped(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("read the local process's answer to request %d: %w", e.ID, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body), BodyTruncated: truncated}, took, nil
}
