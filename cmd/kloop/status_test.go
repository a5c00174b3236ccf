//go:build !agentonly

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kloop/kloop/session"
)

func TestStatusLine(t *testing.T) {
	claim := &session.ClaimStatus{Pool: "dev", Slot: "dev-1"}
	running := &session.ProcessStatus{Program: "./cmd/orders", PID: 42, State: "running"}
	for _, tc := range []struct {
		name string
		st   session.Status
		want string
	}{
		{"nothing held", session.Status{}, "kloop: no claim · no intercept"},
		{"claim only", session.Status{Claim: claim}, "kloop: claim dev-1 · no intercept"},
		{
			"intercept with process",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{{Workload: "orders", State: "intercepted", Pods: 2, Requests: 3}}, Process: running},
			"kloop: claim dev-1 · orders intercepted (2 pods, 3 requests) · process running",
		},
		{
			"one pod, one request, debug",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{{Workload: "orders", State: "intercepted", Pods: 1, Requests: 1}},
				Process: &session.ProcessStatus{State: "running", Debug: true}},
			"kloop: claim dev-1 · orders intercepted (1 pod, 1 request) · process running (debug)",
		},
		{
			"mirror counts copies",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{{Workload: "orders", State: "intercepted", Traffic: "mirror", Pods: 2, Requests: 5}}},
			"kloop: claim dev-1 · orders intercepted (2 pods, mirror, 5 copies)",
		},
		{
			"traffic none has no count",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{{Workload: "orders", State: "none (no traffic)", Traffic: "none"}}},
			"kloop: claim dev-1 · orders ingested (traffic none)",
		},
		{
			"tunnels down says where traffic goes",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{{Workload: "orders", State: "tunnels down (0 of 2 pods); traffic goes to the app"}}},
			"kloop: claim dev-1 · orders tunnels down (0 of 2 pods); traffic goes to the app",
		},
		{
			"two intercepts and a failed build",
			session.Status{Claim: claim, Intercepts: []session.InterceptStatus{
				{Workload: "orders", State: "waiting for a debugger"},
				{Workload: "billing", State: "intercepted", Pods: 1},
			}, Process: running, LastBuild: &session.BuildStatus{OK: false}},
			"kloop: claim dev-1 · orders waiting for a debugger · billing intercepted (1 pod, 0 requests) · process running · last build failed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printStatus(&b, "line", tc.st); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tc.want+"\n" {
				t.Errorf("kloop status -o line:\n got %q\nwant %q", got, tc.want+"\n")
			}
		})
	}
}

func TestOutputLineOnlyForStatus(t *testing.T) {
	for _, args := range [][]string{{"intercept", "orders", "-o", "line"}, {"workloads", "-o", "line"}} {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "only kloop status prints one line") {
			t.Errorf("kloop %s: error %v, want one saying only kloop status prints one line", strings.Join(args, " "), err)
		}
	}
}

func TestWriteEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".kloop.env")
	if err := os.WriteFile(path, []byte("OLD=1\nSTALE=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeEnvFile(path, "DB_URL=postgres://db\n"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "DB_URL=postgres://db\n" {
		t.Errorf("env file holds %q, want only the new env", data)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode %v, want 0600 (it holds the pod's secrets)", fi.Mode().Perm())
	}
}
