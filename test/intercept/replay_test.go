package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kloop/kloop/session"
)

// After a save, the request that reached the old build is sent again to the
// new one with `kloop replay`, and the answers are compared: the user sees
// what their change did to that request without touching curl, and with
// --replay-on-save it happens by itself on every relaunch. Requests
// are listed with credentials masked; one that may change data is not sent
// again without --yes.
func TestReplayTheLastRequestAfterASave(t *testing.T) {
	f := newFixture(t)
	f.MustKloop(t, "intercept", "orders", "--detach", "--replay-on-save")
	firstPid := f.Status(t).Process.PID
	if code, body := f.send(t, http.MethodGet, "/orders/2", "Authorization", "Bearer sekret-123"); code != 200 || !strings.Contains(body, "laptop-v1") {
		t.Fatalf("through the intercept: %d %s", code, body)
	}

	r := f.MustKloop(t, "requests", "-o", "json")
	var list session.RequestsResult
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("requests -o json: %v\n%s", err, r.Stdout)
	}
	var got *int
	for i, e := range list.Requests {
		if e.Target == "/orders/2" && e.Response != nil && strings.Contains(e.Response.Body, "laptop-v1") && e.Pid == firstPid && e.Workload == "deployment/orders" {
			got = &list.Requests[i].ID
		}
	}
	if got == nil {
		t.Fatalf("kloop requests lists %+v; want GET /orders/2 answered by laptop-v1 (pid %d)", list.Requests, firstPid)
	}
	if strings.Contains(r.Stdout, "sekret-123") {
		t.Errorf("kloop requests shows the Authorization value:\n%s", r.Stdout)
	}
	text := f.MustKloop(t, "requests")
	if !strings.Contains(text.Stdout, "GET /orders/2") || !strings.Contains(text.Stdout, "deployment/orders") {
		t.Errorf("kloop requests printed %q", text.Stdout)
	}

	// Save a change; once the new build runs, replay request ID.
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a relaunched process", func() bool {
		st := f.Status(t)
		return st.Process != nil && st.Process.PID != firstPid && st.Process.State == "running"
	})
	newPid := f.Status(t).Process.PID
	// --replay-on-save already sent it to the new build, by itself.
	eventually(t, "the replay on save in kloop logs", func() bool {
		logs := f.MustKloop(t, "logs")
		out := logs.Stdout + logs.Stderr
		return strings.Contains(out, fmt.Sprintf("replayed #%d GET /orders/2 to pid %d after the relaunch: 200, the answer changed:", *got, newPid)) &&
			strings.Contains(out, `$.build: "laptop-v1" → "laptop-v2"`)
	})
	if st := f.Status(t); st.LastReplay == nil || st.LastReplay.Request.ID != *got || st.LastReplay.Same {
		t.Errorf("status lastReplay = %+v; want the replay of #%d with a changed answer", st.LastReplay, *got)
	}
	r = f.MustKloop(t, "replay", fmt.Sprint(*got), "-o", "json")
	var res session.ReplayResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("replay -o json: %v\n%s", err, r.Stdout)
	}
	if res.Same || res.Pid != newPid || res.Response == nil || !strings.Contains(res.Response.Body, "laptop-v2") ||
		!strings.Contains(strings.Join(res.Diff, "\n"), `$.build: "laptop-v1" → "laptop-v2"`) {
		t.Errorf("replay = %+v; want the new build's answer (pid %d) with $.build's change", res, newPid)
	}
	// The text form names both answers' processes and the difference.
	text = f.MustKloop(t, "replay", "--last")
	for _, want := range []string{fmt.Sprintf("to pid %d", newPid), `$.build: "laptop-v1" → "laptop-v2"`} {
		if !strings.Contains(text.Stdout, want) {
			t.Errorf("kloop replay --last printed %q; want %q", text.Stdout, want)
		}
	}

	// A POST is recorded, and not sent again unless confirmed.
	if code, _ := f.send(t, http.MethodPost, "/orders/2"); code == 0 {
		t.Fatal("POST through the intercept got no answer")
	}
	refused := f.Kloop(t, "replay", "--last")
	if refused.Code == 0 || !strings.Contains(refused.Stderr, "--yes") {
		t.Errorf("replay of a POST without --yes: exit %d %q; want a refusal that names --yes", refused.Code, refused.Stderr)
	}
	f.MustKloop(t, "replay", "--last", "--yes")
}

// send sends one request to the orders Service as a cluster client would
// (a ready pod, the Service's targetPort, a real port-forward) and returns
// the status and body.
func (f *fixture) send(t *testing.T, method, path string, header ...string) (int, string) {
	t.Helper()
	ctx := context.Background()
	var code int
	var body string
	eventually(t, method+" "+path+" through the orders Service", func() bool {
		svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return false
		}
		target := svc.Spec.Ports[0].TargetPort.IntValue()
		pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
		client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return f.PF.Dial(ctx, f.Env.Namespace, pod.Name, target)
			},
		}}
		req, _ := http.NewRequest(method, "http://orders"+path, strings.NewReader(""))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Logf("%s %s: %v (retrying)", method, path, err)
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return true
	})
	return code, body
}
