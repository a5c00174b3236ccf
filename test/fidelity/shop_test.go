package fidelity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// The shop: a module of a user's own, not kloop's, with two services.
// checkout calls pricing by its Service name on the Service's port 80, as
// code written for a cluster does; pricing listens on 9471, a container
// port named http that the Service targets by name.
const (
	shopGoMod = "module example.com/shop\n\ngo 1.26\n"

	pricingMain = `package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/price", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"sku": "kb-1", "cents": 4200, "pod": os.Getenv("HOSTNAME")})
	})
	log.Printf("pricing listening on :%s", os.Getenv("PORT"))
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
`

	// checkoutMain's BUILD is replaced by the build's name.
	checkoutMain = `package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
)

const build = "BUILD"

func main() {
	http.HandleFunc("/checkout", func(w http.ResponseWriter, r *http.Request) {
		answer := map[string]any{"build": build}
		resp, err := http.Get("http://pricing/price")
		if err == nil {
			var price map[string]any
			err = json.NewDecoder(resp.Body).Decode(&price)
			resp.Body.Close()
			answer["pricing"] = price
		}
		if err != nil {
			answer["error"] = err.Error()
		}
		json.NewEncoder(w).Encode(answer)
	})
	log.Printf("checkout listening on :%s", os.Getenv("PORT"))
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
`

	// shopManifest's CHECKOUT_PORT is replaced by a port free on this
	// machine: the intercepted program listens on it locally.
	shopManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: pricing}
spec:
  replicas: 1
  selector: {matchLabels: {app: pricing}}
  template:
    metadata: {labels: {app: pricing}}
    spec:
      containers:
        - name: pricing
          image: ko://example.com/shop/cmd/pricing
          ports: [{name: http, containerPort: 9471}]
          env: [{name: PORT, value: "9471"}]
---
apiVersion: v1
kind: Service
metadata: {name: pricing}
spec:
  selector: {app: pricing}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout}
spec:
  replicas: 1
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      containers:
        - name: checkout
          image: ko://example.com/shop/cmd/checkout
          ports: [{name: web, containerPort: CHECKOUT_PORT}]
          env: [{name: PORT, value: "CHECKOUT_PORT"}]
---
apiVersion: v1
kind: Service
metadata: {name: checkout}
spec:
  selector: {app: checkout}
  ports: [{port: 80, targetPort: web}]
`
)

type checkoutAnswer struct {
	Build   string `json:"build"`
	Pricing *struct {
		SKU   string `json:"sku"`
		Cents int    `json:"cents"`
		Pod   string `json:"pod"`
	} `json:"pricing"`
	Error string `json:"error"`
}

// TestServiceNamesAndPortsFromYourOwnModule runs the shop as a user would:
// `kloop sandbox run -f shop.yaml` from the shop's own module, then `kloop
// intercept checkout --program ./cmd/checkout` there. checkout reaches
// pricing at http://pricing (port 80, targetPort named http = 9471) from its
// pod, and the local build reaches it the same way through the intercept's
// outbound proxy, which dials from the agent inside the pod. The agent the
// intercept injects is stood in by the kloop binary running `sandbox run`:
// built from source, kloop's packages would not be found in the shop's
// module and the intercept would fail.
func TestServiceNamesAndPortsFromYourOwnModule(t *testing.T) {
	env := cluster.New(t)
	bin := binary(t)
	port := orders.FreePort(t)
	mod := t.TempDir()
	manifest := strings.ReplaceAll(shopManifest, "CHECKOUT_PORT", strconv.Itoa(port))
	writeModule(t, mod, map[string]string{
		"go.mod":               shopGoMod,
		"cmd/pricing/main.go":  pricingMain,
		"cmd/checkout/main.go": strings.Replace(checkoutMain, "BUILD", "cluster", 1),
		"deploy/shop.yaml":     manifest,
	})

	kloop := editor.NewEnv(t, bin)
	kloop.Extra = []string{"KUBECONFIG=" + env.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(kloop.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})

	run := kloop.Command(context.Background(), "sandbox", "run", "--name", env.Cluster.Name, "-n", env.Namespace, "-f", "deploy/shop.yaml")
	run.Dir = mod
	var runOut safeBuffer
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runExited := make(chan error, 1)
	go func() { runExited <- run.Wait() }()
	runStopped := false
	t.Cleanup(func() {
		if !runStopped {
			_ = run.Process.Signal(os.Interrupt)
			select {
			case <-runExited:
			case <-time.After(time.Minute):
				_ = run.Process.Kill()
				<-runExited
			}
		}
		if t.Failed() {
			t.Logf("kloop sandbox run:\n%s", runOut.String())
		}
	})
	pf := portforward.NewDialer(env.Config)

	// In the cluster: checkout's pod calls http://pricing.
	a := waitCheckout(t, env, pf, runExited, "cluster")
	if !strings.HasPrefix(a.Pricing.Pod, "pricing-") {
		t.Errorf("pricing answered from %q, want a pod of deployment/pricing", a.Pricing.Pod)
	}

	// Through the intercept: the local build calls http://pricing through
	// the outbound proxy.
	writeModule(t, mod, map[string]string{"cmd/checkout/main.go": strings.Replace(checkoutMain, "BUILD", "laptop", 1)})
	icpt := kloop.Command(context.Background(), "intercept", "checkout", "--program", "./cmd/checkout")
	icpt.Dir = mod
	var out safeBuffer
	icpt.Stdout, icpt.Stderr = &out, &out
	if err := icpt.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- icpt.Wait() }()
	t.Cleanup(func() {
		if icpt.ProcessState == nil {
			_ = icpt.Process.Kill()
		}
	})
	deadline := time.Now().Add(cluster.WaitTimeout)
	for !strings.Contains(out.String(), "checkout listening") {
		select {
		case err := <-exited:
			t.Fatalf("kloop intercept checkout --program ./cmd/checkout ended (%v):\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local checkout did not start within %s:\n%s", cluster.WaitTimeout, out.String())
		}
	}
	a = waitCheckout(t, env, pf, runExited, "laptop")
	if !strings.HasPrefix(a.Pricing.Pod, "pricing-") {
		t.Errorf("through the outbound proxy, pricing answered from %q, want a pod of deployment/pricing", a.Pricing.Pod)
	}

	if err := icpt.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("kloop intercept after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(cluster.WaitTimeout):
		t.Fatalf("kloop intercept still runs %s after Ctrl-C:\n%s", cluster.WaitTimeout, out.String())
	}
	if !strings.Contains(out.String(), "left deployment/checkout") {
		t.Errorf("no word of leaving after Ctrl-C:\n%s", out.String())
	}
	// The cluster's checkout answers again, still reaching pricing by name.
	waitCheckout(t, env, pf, runExited, "cluster")

	runStopped = true
	if err := run.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runExited:
		if err != nil {
			t.Errorf("kloop sandbox run after Ctrl-C: %v\n%s", err, runOut.String())
		}
	case <-time.After(time.Minute):
		_ = run.Process.Kill()
		t.Fatalf("kloop sandbox run still runs a minute after Ctrl-C:\n%s", runOut.String())
	}
	if !strings.Contains(runOut.String(), "Stopped every stand-in.") {
		t.Errorf("kloop sandbox run did not say it stopped its stand-ins:\n%s", runOut.String())
	}
}

// waitCheckout waits for an answer of checkout's build that priced the
// item through pricing, and fails t with the last answer or error if none
// comes, or if `kloop sandbox run` exits.
func waitCheckout(t *testing.T, env *cluster.Env, pf *portforward.Dialer, runExited <-chan error, build string) checkoutAnswer {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(cluster.WaitTimeout)
	last := ""
	for {
		select {
		case err := <-runExited:
			t.Fatalf("kloop sandbox run exited: %v", err)
		default:
		}
		body, err := getThroughService(ctx, env, pf, "checkout", "/checkout")
		var a checkoutAnswer
		if err == nil {
			if err = json.Unmarshal([]byte(body), &a); err == nil {
				if a.Build == build && a.Error == "" && a.Pricing != nil && a.Pricing.Cents == 4200 {
					return a
				}
				err = fmt.Errorf("answer %s", strings.TrimSpace(body))
			}
		}
		if err.Error() != last {
			last = err.Error()
			t.Logf("GET /checkout (want build %s priced by pricing): %v", build, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer of build %s priced through http://pricing within %s; last: %s", build, cluster.WaitTimeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
