package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the programs under test: with KLOOP_RUN_HELPER
// set it becomes one of them instead of running tests, so every test runs a
// real process without a build step.
func TestMain(m *testing.M) {
	if mode := os.Getenv("KLOOP_RUN_HELPER"); mode != "" {
		helper(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode string) {
	port := os.Getenv("PORT")
	switch mode {
	case "serve", "ignore-term", "unhealthy":
		fmt.Println("env FOO=" + os.Getenv("FOO"))
		fmt.Fprintln(os.Stderr, "listening on "+port)
		if mode == "ignore-term" {
			signal.Ignore(syscall.SIGTERM)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if mode == "unhealthy" {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(w, "pid %d", os.Getpid())
		})
		mux.HandleFunc("/missing", http.NotFound)
		mux.HandleFunc("/crash", func(http.ResponseWriter, *http.Request) {
			fmt.Fprintln(os.Stderr, "panic: asked to crash")
			os.Exit(2)
		})
		srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux}
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM)
			<-sig
			fmt.Println("shutting down")
			srv.Shutdown(context.Background())
		}()
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "exit":
		fmt.Println("starting")
		fmt.Fprintln(os.Stderr, "config error: DATABASE_URL is not set")
		os.Exit(3)
	case "sleep":
		fmt.Println("doing something else than listening")
		time.Sleep(time.Hour)
	case "daemon":
		// A stand-in for the kloop daemon: starts a program group, reports
		// it, and then waits to be killed without cleaning up.
		forked := make(chan struct{}, 1)
		p, err := Start(context.Background(), Spec{
			Argv:   []string{"sh", "-c", "sleep 1000 & echo $!; exec sleep 1001"},
			OnLine: func(Stream, string) { forked <- struct{}{} },
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		<-forked // the background child exists
		json.NewEncoder(os.Stdout).Encode(p.Info())
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(1)
	}
}

// helperSpec runs the test binary as helper mode on port.
func helperSpec(t *testing.T, mode string, port int, env ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// GORACE: a race-enabled helper would otherwise linger 1 s at exit.
	env = append(os.Environ(), append(env, "KLOOP_RUN_HELPER="+mode, fmt.Sprintf("PORT=%d", port), "GORACE=atexit_sleep_ms=0")...)
	return Spec{Argv: []string{exe}, Env: env, Port: port, ReadyTimeout: time.Minute, StopGrace: 10 * time.Second}
}

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether pid has exited (absent or a zombie nobody reaped).
func gone(pid int) bool {
	st, err := readProcStat(pid)
	return err != nil || !st.alive()
}

func get(t *testing.T, port int, path string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b [256]byte
	n, _ := resp.Body.Read(b[:])
	return string(b[:n]), nil
}
