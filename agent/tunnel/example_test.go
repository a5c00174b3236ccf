package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
)

// The daemon's side of a personal intercept. In kloop the connection to the
// agent comes from a Kubernetes port-forward to the pod's control port; any
// net.Conn works.
func Example() {
	ctx := context.Background()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "cluster app") }))
	defer app.Close()
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "my laptop") }))
	defer local.Close()
	a, err := agent.Start(ctx, agent.Config{
		Forwards:   []agent.Forward{{Target: app.Listener.Addr().String(), Protocol: tunnel.ProtoHTTP}},
		ListenHost: "127.0.0.1",
		Control:    "127.0.0.1:0",
		Token:      "per-intercept-token",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	conn, err := net.Dial("tcp", a.ControlAddr()) // the port-forward
	if err != nil {
		fmt.Println(err)
		return
	}
	client, err := tunnel.Dial(ctx, conn, "per-intercept-token")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	appPort := client.Agent().Ports[0].Port
	// Serve inbound streams before routing anything to this laptop. The
	// dial func is where the daemon waits out a relaunch.
	go client.ServeInbound(ctx, func(ctx context.Context, port int) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", local.Listener.Addr().String())
	})
	header, _ := tunnel.ParseHeaderMatch("x-dev=alice")
	if err := client.SetIntercept(ctx, tunnel.Intercept{Ports: []int{appPort}, Header: &header}); err != nil {
		fmt.Println(err)
		return
	}

	agentAddr, _ := a.ListenAddr(appPort) // what the Service targets
	for _, dev := range []string{"alice", ""} {
		req, _ := http.NewRequest("GET", "http://"+agentAddr+"/", nil)
		if dev != "" {
			req.Header.Set("X-Dev", dev)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("x-dev=%q -> %s\n", dev, body)
	}
	stats, _ := client.Stats(ctx)
	fmt.Println("to laptop:", stats.Ports[0].ToLaptop, "to app:", stats.Ports[0].ToApp)
	// Output:
	// x-dev="alice" -> my laptop
	// x-dev="" -> cluster app
	// to laptop: 1 to app: 1
}
