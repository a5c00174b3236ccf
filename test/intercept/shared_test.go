package intercept_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// Two developers on one machine, as two users with daemons of their own,
// intercept orders with their own headers through the CLI as typed: each
// gets only their requests, the rest reach the app; the first to leave
// leaves the other's intercept alone, and the last one restores orders.
func TestTwoDevelopersShareAWorkload(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)

	// Alice runs her program under a personal intercept.
	f.MustKloop(t, "intercept", "orders", "--header", "x-dev=alice", "--detach")

	// Bob is uid 65534 with his own daemon, workspace and a server of his
	// own on loopback.
	bob := newDeveloper(t, f, 65534)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"build": "bob"}`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	bobPort := ln.Addr().(*net.TCPAddr).Port
	bob.mustKloop(t, "intercept", "orders", "--header", "x-dev=bob", "--port", fmt.Sprintf("8080:%d", bobPort), "--detach")

	route := func(when string, want map[string]string) {
		t.Helper()
		for dev, build := range want {
			var h []string
			if dev != "" {
				h = []string{"x-dev", dev}
			}
			if _, a, body := f.GetOrder(t, h...); a.Build != build {
				t.Errorf("%s: x-dev=%q answered %s; want build %q (\"\" is the app)", when, dev, strings.TrimSpace(body), build)
			}
		}
	}
	route("both intercepting", map[string]string{"alice": "laptop-v1", "bob": "bob", "": "", "carol": ""})
	if st := f.Status(t); len(st.Intercepts) != 1 || st.Intercepts[0].Header["x-dev"] != "alice" {
		t.Errorf("alice's status = %+v; want her own intercept only", st.Intercepts)
	}

	// Alice leaves: her rule goes, Bob's intercept stays, nothing restarts.
	f.MustKloop(t, "leave", "orders")
	route("after alice left", map[string]string{"alice": "", "bob": "bob", "": ""})
	if template, _ := f.Specs(t); reflect.DeepEqual(template, origTemplate) {
		t.Errorf("orders was restored while bob still intercepts it")
	}

	bob.mustKloop(t, "leave", "orders")
	template, ports := f.Specs(t)
	if !reflect.DeepEqual(template, origTemplate) || !reflect.DeepEqual(ports, origPorts) {
		t.Errorf("after the last leave orders is not restored:\ntemplate %+v\nwant     %+v\nports %+v\nwant  %+v", template, origTemplate, ports, origPorts)
	}
	route("after both left", map[string]string{"alice": "", "bob": ""})
}

// developer is another user of the machine with a kloop daemon and a
// workspace of their own.
type developer struct {
	env *editor.Env
	ws  string
}

func newDeveloper(t *testing.T, f *fixture, uid int) *developer {
	t.Helper()
	env := editor.NewEnvAs(t, binary(t), uid)
	ws := filepath.Join(env.Home(), "ws")
	// The cluster's credentials inline, in a file only that user reads.
	cfg, err := clientcmd.LoadFromFile(f.Env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"kubeconfig": kc, ".kloop.yaml": []byte("kubeconfig: " + filepath.Join(ws, "kubeconfig") + "\n")}
	if err := os.Mkdir(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ws, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{ws, filepath.Join(ws, "kubeconfig"), filepath.Join(ws, ".kloop.yaml")} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	d := &developer{env: env, ws: ws}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(env.State, "daemon.log")); err == nil {
				t.Logf("uid %d's daemon log:\n%s", uid, log)
			}
		}
	})
	return d
}

func (d *developer) mustKloop(t *testing.T, args ...string) orders.Result {
	t.Helper()
	f := &orders.Fixture{Daemon: d.env}
	r := f.KloopIn(t, d.ws, args...)
	if r.Code != 0 {
		t.Fatalf("kloop %s as uid %d: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), d.env.Credential.Uid, r.Code, r.Stdout, r.Stderr)
	}
	return r
}
