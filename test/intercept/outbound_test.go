package intercept_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutboundRulesChooseClusterOrLocal: through the proxy kloop gives the
// program, a cluster name (users, from the pod's USERS_URL) is dialed from
// inside the cluster; the same Service named in --outbound-exclude is dialed
// from this machine, where no cluster DNS resolves it; an excluded address
// reaches a server on this machine; NO_PROXY lists the excludes.
func TestOutboundRulesChooseClusterOrLocal(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "answered on the laptop")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	local := ln.Addr().String()

	cfg := "kubeconfig: " + f.Env.Kubeconfig + "\n"
	if err := os.WriteFile(filepath.Join(f.WS, ".kloop.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	excluded := "users." + f.Env.Namespace + ".svc.cluster.local"
	out := filepath.Join(t.TempDir(), "out")
	// --noproxy '' makes curl use the proxy even for what NO_PROXY lists,
	// so each answer shows the proxy's own routing.
	script := `exec > ` + out + ` 2>&1
echo "NO_PROXY=$NO_PROXY"
echo "cluster: $(curl -sS --noproxy '' --proxy "$HTTP_PROXY" "$USERS_URL/users/1")"
echo "excluded: $(curl -sS --noproxy '' --proxy "$HTTP_PROXY" -w ' %{http_code}' http://` + excluded + `:8080/users/1 | tr -d '\n')"
echo "local: $(curl -sS --noproxy '' --proxy "$HTTP_PROXY" http://` + local + `/)"
`
	f.MustKloop(t, "intercept", "orders",
		"--outbound-exclude", excluded, "--outbound-exclude", local, "--outbound-include", "*.example.internal",
		"--", "sh", "-c", script)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the command did not run: %v", err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == l {
			k, v, _ = strings.Cut(l, "=")
		}
		lines[k] = v
	}
	if got := lines["cluster"]; !strings.Contains(got, `"name"`) {
		t.Errorf("users through the proxy answered %q, want the users Service's user", got)
	}
	if got := lines["excluded"]; !strings.HasSuffix(got, " 502") || !strings.Contains(got, "from this machine (outbound rules keep it local)") {
		t.Errorf("the excluded %s answered %q, want a 502 saying it was dialed from this machine", excluded, got)
	}
	if got := lines["local"]; got != "answered on the laptop" {
		t.Errorf("the excluded local server %s answered %q", local, got)
	}
	if got := lines["NO_PROXY"]; !strings.Contains(got, ","+excluded+",") || !strings.HasSuffix(got, ","+local) {
		t.Errorf("NO_PROXY=%q, want it to list %s and %s", got, excluded, local)
	}
}
