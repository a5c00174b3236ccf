package intercept

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// DefaultHold is how long LocalDialer keeps retrying a local process that
// does not accept (it is being rebuilt and relaunched). The agent waits 30 s
// for the laptop before giving a connection to the app.
const DefaultHold = 20 * time.Second

// LocalDialer returns the tunnel's local leg: it connects an intercepted app
// port to the local process's address (addr returns it; false refuses the
// port at once) and, while nothing accepts there, retries every 50 ms for up
// to hold, so connections that arrive during a relaunch wait instead of
// failing. When it gives up the agent sends the connection to the app.
func LocalDialer(addr func(appPort int) (string, bool), hold time.Duration) tunnel.LocalDialFunc {
	if hold <= 0 {
		hold = DefaultHold
	}
	return func(ctx context.Context, port int) (net.Conn, error) {
		a, ok := addr(port)
		if !ok {
			return nil, fmt.Errorf("port %d is not served locally", port)
		}
		ctx, cancel := context.WithTimeout(ctx, hold)
		defer cancel()
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				return c, nil
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("local process at %s (app port %d) did not accept within %s: %w", a, port, hold, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
