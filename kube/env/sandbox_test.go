package env

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/test/cluster"
)

// The tests below run against the real apiserver of the sandbox cluster
// (kwok runs the pods: they are Running, with IPs and a node).

func TestMain(m *testing.M) { cluster.Main(m) }

const (
	ordersManifest = "../../test/testdata/orders.yaml"
	usersManifest  = "../../test/testdata/users.yaml"
)

func names(vars []Var) []string {
	var out []string
	for _, v := range vars {
		out = append(out, v.Name)
	}
	return out
}

func mustGet(t *testing.T, r *Result, name string) string {
	t.Helper()
	v, ok := r.Get(name)
	if !ok {
		t.Fatalf("%s not set; vars %q", name, names(r.Vars))
	}
	return v
}

func TestSandboxOrdersSample(t *testing.T) {
	e := cluster.New(t)
	e.Apply(t, ordersManifest, usersManifest)
	pods := e.WaitPodsRunning(t, "app=orders", 2)
	root := filepath.Join(t.TempDir(), "root")

	res, err := Resolve(t.Context(), e.Client, e.Namespace, "orders", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Container != "orders" || res.Workload != (workload.Workload{Kind: workload.Deployment, Name: "orders"}) || res.Namespace != e.Namespace {
		t.Errorf("result identity: %+v", res)
	}
	wantOrder := []string{"GREETING", "USERS_URL", "POD_NAME", "POD_NAMESPACE", "API_TOKEN", "CONFIG_DIR", "CATALOG_FILE", "HTTP_ADDR", "ADMIN_ADDR", RootVar}
	if got := names(res.Vars); !slices.Equal(got, wantOrder) {
		t.Errorf("vars %q, want %q", got, wantOrder)
	}
	var podNames []string
	for _, p := range pods {
		podNames = append(podNames, p.Name)
	}
	if !slices.Contains(podNames, res.Pod) || mustGet(t, res, "POD_NAME") != res.Pod {
		t.Errorf("POD_NAME %q / Pod %q, want one of the running pods %q", mustGet(t, res, "POD_NAME"), res.Pod, podNames)
	}
	for name, want := range map[string]string{
		"GREETING": "hello from orders", "USERS_URL": "http://users:8080", "POD_NAMESPACE": e.Namespace,
		"API_TOKEN": "sample-token-not-a-real-secret", "CONFIG_DIR": "/etc/orders", "CATALOG_FILE": "/etc/orders/catalog.json",
		"HTTP_ADDR": ":8080", "ADMIN_ADDR": ":9090", RootVar: root,
	} {
		if got := mustGet(t, res, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, v := range res.Vars {
		if v.Secret != (v.Name == "API_TOKEN") {
			t.Errorf("%s: secret = %v", v.Name, v.Secret)
		}
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}

	// The catalog ConfigMap volume is at $KLOOP_ROOT/etc/orders.
	cm, err := e.Client.CoreV1().ConfigMaps(e.Namespace).Get(t.Context(), "orders-catalog", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "etc", "orders", "catalog.json")
	data, err := os.ReadFile(file)
	if err != nil || string(data) != cm.Data["catalog.json"] {
		t.Fatalf("catalog file: %q, %v", data, err)
	}
	if len(res.Files) != 1 || res.Files[0].Path != file || res.Files[0].MountPath != "/etc/orders/catalog.json" {
		t.Errorf("files: %+v", res.Files)
	}
	checkModes(t, root)

	// Every format carries the same values.
	checkFormats(t, res)

	// With service links, the Services' variables as the kubelet makes them.
	res, err = Resolve(t.Context(), e.Client, e.Namespace, "deployment/orders", Options{ServiceLinks: true})
	if err != nil {
		t.Fatal(err)
	}
	svc := map[string]string{}
	for _, name := range []string{"orders", "users"} {
		s, err := e.Client.CoreV1().Services(e.Namespace).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc[name] = s.Spec.ClusterIP
	}
	master, err := e.Client.CoreV1().Services("default").Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"ORDERS_SERVICE_HOST": svc["orders"], "ORDERS_SERVICE_PORT": "8080", "ORDERS_SERVICE_PORT_ADMIN": "9090",
		"ORDERS_PORT": "tcp://" + svc["orders"] + ":8080", "ORDERS_PORT_9090_TCP_ADDR": svc["orders"],
		"USERS_PORT_8080_TCP": "tcp://" + svc["users"] + ":8080", "USERS_PORT_8080_TCP_PROTO": "tcp", "USERS_PORT_8080_TCP_PORT": "8080",
		"KUBERNETES_SERVICE_HOST": master.Spec.ClusterIP, "GREETING": "hello from orders",
	} {
		if got := mustGet(t, res, name); got != want || want == "" {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if n := names(res.Vars); !slices.Equal(n[:9], wantOrder[:9]) {
		t.Errorf("service links must come after the container's own variables: %q", n)
	}
}

// checkModes: every directory under root is 0700 and every file at most 0600.
func checkModes(t *testing.T, root string) {
	t.Helper()
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if info.IsDir() && perm != 0o700 || !info.IsDir() && perm&0o077 != 0 {
			t.Errorf("%s: mode %o", path, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkFormats writes res in every format and reads it back: the dotenv
// with ParseDotenv, the JSON with encoding/json, the shell output by
// sourcing it in sh.
func checkFormats(t *testing.T, res *Result) {
	t.Helper()
	want := res.Map()
	var buf bytes.Buffer
	if err := res.Write(&buf, Dotenv); err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseDotenv(&buf)
	if err != nil {
		t.Fatalf("parse dotenv back: %v", err)
	}
	if got := pairs(parsed); !slices.Equal(got, pairs(withoutSecretFlag(res.Vars))) {
		t.Errorf("dotenv round trip:\n got %q\nwant %q", got, pairs(res.Vars))
	}

	buf.Reset()
	if err := res.Write(&buf, JSON); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("decode json: %v", err)
	}
	if len(m) != len(want) {
		t.Errorf("json has %d keys, want %d", len(m), len(want))
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("json %s = %q, want %q", k, m[k], v)
		}
	}

	buf.Reset()
	if err := res.Write(&buf, Shell); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "env.sh")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `. "$1" && env -0`, "sh", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("source shell output: %v", err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			got[k] = v
		}
	}
	for k, v := range want {
		if !shellName.MatchString(k) {
			if _, ok := got[k]; ok || !strings.Contains(buf.String(), "# skipped "+strconv.Quote(k)) {
				t.Errorf("shell: %s is no shell name and must be a comment", k)
			}
			continue
		}
		if got[k] != v {
			t.Errorf("shell %s = %q, want %q", k, got[k], v)
		}
	}
}

func withoutSecretFlag(vars []Var) []Var {
	out := slices.Clone(vars)
	for i := range out {
		out[i].Secret = false
	}
	return out
}

const multilineSecret = "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASC\n'single' \"double\" $HOME $(X) `cmd` \\ #hash\n-----END PRIVATE KEY-----\n"

// kitchenManifest uses every valueFrom kind, envFrom with prefixes and
// optional refs, and every materialized volume kind.
const kitchenManifest = `
apiVersion: v1
kind: ConfigMap
metadata: {name: kitchen-config}
data:
  LEVEL: debug
  SHARED: from-configmap
  dotted.key: kept
  settings.yaml: |
    a: 1
    b: "two"
---
apiVersion: v1
kind: Secret
metadata: {name: kitchen-secret}
type: Opaque
stringData:
  password: p@ss'w"rd
  SHARED: from-secret
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kitchen}
spec:
  replicas: 1
  selector: {matchLabels: {app: kitchen}}
  template:
    metadata:
      labels: {app: kitchen, tier: backend}
      annotations: {example.com/team: payments}
    spec:
      serviceAccountName: default
      containers:
        - name: kloop-agent
          image: agent
        - name: kitchen
          image: kitchen
          resources:
            limits: {cpu: 1500m, memory: 256Mi}
            requests: {cpu: 250m}
          envFrom:
            - configMapRef: {name: kitchen-config}
              prefix: CFG_
            - secretRef: {name: kitchen-secret}
              prefix: SEC_
            - configMapRef: {name: kitchen-absent, optional: true}
          env:
            - {name: PLAIN, value: plain}
            - {name: EXPANDED, value: "$(PLAIN)-$(CFG_LEVEL)-$$(PLAIN)-$(UNDEFINED)"}
            - name: KEY
              valueFrom: {secretKeyRef: {name: multiline, key: tls.key}}
            - name: PASSWORD
              valueFrom: {secretKeyRef: {name: kitchen-secret, key: password}}
            - name: LEVEL
              valueFrom: {configMapKeyRef: {name: kitchen-config, key: LEVEL}}
            - name: OPTIONAL_MISSING
              valueFrom: {configMapKeyRef: {name: kitchen-config, key: nope, optional: true}}
            - name: OPTIONAL_SECRET_MISSING
              valueFrom: {secretKeyRef: {name: no-such-secret, key: x, optional: true}}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: POD_UID
              valueFrom: {fieldRef: {fieldPath: metadata.uid}}
            - name: TIER
              valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
            - name: TEAM
              valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/team']"}}
            - name: NODE
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: SA
              valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - name: POD_IPS
              valueFrom: {fieldRef: {fieldPath: status.podIPs}}
            - name: HOST_IP
              valueFrom: {fieldRef: {fieldPath: status.hostIP}}
            - name: CPU_LIMIT
              valueFrom: {resourceFieldRef: {resource: limits.cpu}}
            - name: CPU_LIMIT_M
              valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}
            - name: CPU_REQUEST_M
              valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
            - name: MEM_LIMIT_MI
              valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
            - name: MEM_REQUEST_MI
              valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Mi}}
            - name: EPHEMERAL_LIMIT
              valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage}}
            - name: AGENT_CPU_M
              valueFrom: {resourceFieldRef: {containerName: kloop-agent, resource: limits.cpu, divisor: 1m}}
            - name: URL
              value: "http://$(POD_IP):8080/?user=$(PASSWORD)"
          volumeMounts:
            - {name: tls, mountPath: /etc/tls, readOnly: true}
            - {name: config, mountPath: /etc/kitchen/settings.yaml, subPath: settings.yaml}
            - {name: all, mountPath: /projected}
      volumes:
        - name: tls
          secret:
            secretName: multiline
            defaultMode: 0440
            items: [{key: tls.key, path: private/key.pem}]
        - name: config
          configMap: {name: kitchen-config}
        - name: all
          projected:
            sources:
              - configMap: {name: kitchen-config, items: [{key: LEVEL, path: level}]}
              - secret: {name: kitchen-secret, items: [{key: password, path: secret/password, mode: 0600}]}
              - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
              - secret: {name: absent-but-optional, optional: true}
`

func TestSandboxEveryValueFromKindAndMultilineSecret(t *testing.T) {
	e := cluster.New(t)
	ctx := t.Context()
	if _, err := e.Client.CoreV1().Secrets(e.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "multiline"},
		Data:       map[string][]byte{"tls.key": []byte(multilineSecret)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.ApplyYAML(ctx, []byte(kitchenManifest)); err != nil {
		t.Fatal(err)
	}
	pod := e.WaitPodsRunning(t, "app=kitchen", 1)[0]
	node, err := e.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kwok's node has no allocatable ephemeral-storage: then the kubelet
	// too has nothing to default the limit to, and the value is 0.
	eph := node.Status.Allocatable[corev1.ResourceEphemeralStorage]
	nodeCPU := node.Status.Allocatable[corev1.ResourceCPU]
	if nodeCPU.IsZero() {
		t.Fatalf("node %s has no allocatable cpu to default to", node.Name)
	}
	var podIPs []string
	for _, ip := range pod.Status.PodIPs {
		podIPs = append(podIPs, ip.IP)
	}
	root := filepath.Join(t.TempDir(), "kloop root")
	res, err := Resolve(ctx, e.Client, e.Namespace, "deployment/kitchen", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Container != "kitchen" {
		t.Errorf("default container %q, want the first that is not kloop-agent", res.Container)
	}
	want := []struct{ name, value string }{
		{"CFG_LEVEL", "debug"}, {"CFG_SHARED", "from-configmap"}, {"CFG_dotted.key", "kept"}, {"CFG_settings.yaml", "a: 1\nb: \"two\"\n"},
		{"SEC_SHARED", "from-secret"}, {"SEC_password", `p@ss'w"rd`},
		{"PLAIN", "plain"}, {"EXPANDED", "plain-debug-$(PLAIN)-$(UNDEFINED)"},
		{"KEY", multilineSecret}, {"PASSWORD", `p@ss'w"rd`}, {"LEVEL", "debug"},
		{"POD_NAME", pod.Name}, {"POD_NAMESPACE", e.Namespace}, {"POD_UID", string(pod.UID)},
		{"TIER", "backend"}, {"TEAM", "payments"}, {"NODE", pod.Spec.NodeName}, {"SA", "default"},
		{"POD_IP", pod.Status.PodIP}, {"POD_IPS", strings.Join(podIPs, ",")}, {"HOST_IP", pod.Status.HostIP},
		{"CPU_LIMIT", "2"}, {"CPU_LIMIT_M", "1500"}, {"CPU_REQUEST_M", "250"},
		{"MEM_LIMIT_MI", "256"}, {"MEM_REQUEST_MI", "256"}, // requests default to limits
		{"EPHEMERAL_LIMIT", strconv.FormatInt(eph.Value(), 10)},      // no limit: the node's allocatable
		{"AGENT_CPU_M", strconv.FormatInt(nodeCPU.MilliValue(), 10)}, // another container, no limit: the node's
		{"URL", "http://" + pod.Status.PodIP + ":8080/?user=p@ss'w\"rd"},
		{RootVar, root},
	}
	var wantNames []string
	for _, w := range want {
		wantNames = append(wantNames, w.name)
		if got := mustGet(t, res, w.name); got != w.value {
			t.Errorf("%s = %q, want %q", w.name, got, w.value)
		}
	}
	if got := names(res.Vars); !slices.Equal(got, wantNames) {
		t.Errorf("vars in order %q, want %q", got, wantNames)
	}
	if pod.Status.PodIP == "" || pod.Status.HostIP == "" {
		t.Errorf("the sandbox pod has no IPs: %+v", pod.Status)
	}
	for _, v := range res.Vars {
		wantSecret := strings.HasPrefix(v.Name, "SEC_") || v.Name == "KEY" || v.Name == "PASSWORD" || v.Name == "URL"
		if v.Secret != wantSecret {
			t.Errorf("%s: secret = %v, want %v", v.Name, v.Secret, wantSecret)
		}
	}
	for _, w := range []string{`optional ConfigMap "kitchen-absent" not found`, `optional key "nope" not in ConfigMap "kitchen-config"`, `optional Secret "no-such-secret" not found`, `optional Secret "absent-but-optional" not found`} {
		if !slices.ContainsFunc(res.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning %q in %q", w, res.Warnings)
		}
	}
	assertNoSecretIn(t, strings.Join(res.Warnings, "\n"))

	// Files.
	for rel, wantData := range map[string]string{
		"etc/tls/private/key.pem":   multilineSecret,
		"etc/kitchen/settings.yaml": "a: 1\nb: \"two\"\n",
		"projected/level":           "debug",
		"projected/secret/password": `p@ss'w"rd`,
		"projected/labels":          "app=\"kitchen\"\npod-template-hash=\"" + pod.Labels["pod-template-hash"] + "\"\ntier=\"backend\"",
	} {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || string(data) != wantData {
			t.Errorf("%s: %q, %v; want %q", rel, data, err, wantData)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/tls/private/key.pem")); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("key.pem with defaultMode 0440: %v, %v; want 0400", fi.Mode(), err)
	}
	checkModes(t, root)
	checkFormats(t, res)
}

func assertNoSecretIn(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{"BEGIN PRIVATE KEY", "p@ss", "sample-token-not-a-real-secret", "from-secret"} {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q leaked into %q", secret, s)
		}
	}
}

const statefulSetManifest = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - name: db
          image: db
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - {name: DATA, value: /data/$(POD_NAME)}
        - name: metrics
          image: metrics
          env:
            - {name: ROLE, value: metrics}
`

func TestSandboxStatefulSetAndNamedContainer(t *testing.T) {
	e := cluster.New(t)
	if err := e.ApplyYAML(t.Context(), []byte(statefulSetManifest)); err != nil {
		t.Fatal(err)
	}
	e.WaitPodsRunning(t, "app=db", 1)
	res, err := Resolve(t.Context(), e.Client, e.Namespace, "statefulset/db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pairs(res.Vars); !slices.Equal(got, []string{"POD_NAME=db-0", "DATA=/data/db-0"}) || res.Pod != "db-0" {
		t.Errorf("vars %q, pod %q", got, res.Pod)
	}
	if _, ok := res.Get(RootVar); ok || res.Root != "" {
		t.Error("KLOOP_ROOT set without a root")
	}
	res, err = Resolve(t.Context(), e.Client, e.Namespace, "sts/db", Options{Container: "metrics"})
	if err != nil || !slices.Equal(pairs(res.Vars), []string{"ROLE=metrics"}) || res.Container != "metrics" {
		t.Errorf("named container: %v, %v", res, err)
	}
}

func TestSandboxNoRunningPodUsesTemplate(t *testing.T) {
	e := cluster.New(t)
	manifest := strings.Replace(statefulSetManifest, "replicas: 1", "replicas: 0", 1)
	manifest = strings.Replace(manifest, "kind: StatefulSet", "kind: Deployment", 1)
	manifest = strings.Replace(manifest, "  serviceName: db\n", "", 1)
	if err := e.ApplyYAML(t.Context(), []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	res, err := Resolve(t.Context(), e.Client, e.Namespace, "db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pairs(res.Vars); !slices.Equal(got, []string{"POD_NAME=", "DATA=/data/"}) || res.Pod != "" {
		t.Errorf("vars %q, pod %q", got, res.Pod)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "env POD_NAME: no running pod of deployment/db, so metadata.name is empty") {
		t.Errorf("warnings %q", res.Warnings)
	}
}

func TestSandboxErrors(t *testing.T) {
	e := cluster.New(t)
	e.Apply(t, ordersManifest)
	ctx := t.Context()
	for _, tc := range []struct {
		name, workload, container string
		is                        error
		msg                       string
	}{
		{"no deployment", "nope", "", ErrWorkloadNotFound, `deployment/nope not found in namespace "` + e.Namespace + `"`},
		{"no statefulset", "statefulset/orders", "", ErrWorkloadNotFound, `statefulset/orders not found in namespace "` + e.Namespace + `"`},
		{"no container", "deployment/orders", "sidecar", ErrContainerNotFound, `deployment/orders has no container "sidecar" (containers: orders)`},
		{"bad reference", "daemonset/orders", "", ErrBadWorkload, `workload "daemonset/orders": kind must be deployment or statefulset`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(ctx, e.Client, e.Namespace, tc.workload, Options{Container: tc.container})
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tc.is, tc.msg)
			}
		})
	}

	t.Run("required secret missing", func(t *testing.T) {
		if err := e.Client.CoreV1().Secrets(e.Namespace).Delete(ctx, "orders-secret", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := Resolve(ctx, e.Client, e.Namespace, "orders", Options{})
		var me *MissingRefError
		if !errors.As(err, &me) || me.Name != "orders-secret" || me.Kind != "Secret" ||
			!strings.Contains(err.Error(), `env API_TOKEN: Secret "orders-secret" not found in namespace "`+e.Namespace+`" (the reference is not optional)`) {
			t.Errorf("err = %v", err)
		}
		if _, err := e.Client.CoreV1().Secrets(e.Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-secret"}, Data: map[string][]byte{"other": []byte("x")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = Resolve(ctx, e.Client, e.Namespace, "orders", Options{})
		if !errors.As(err, &me) || me.Key != "api-token" || !strings.Contains(err.Error(), `Secret "orders-secret" in namespace "`+e.Namespace+`" has no key "api-token"`) {
			t.Errorf("err = %v", err)
		}
	})
}

// serviceAccountClient authenticates as a new ServiceAccount bound to a
// Role with rules, and nothing else.
func serviceAccountClient(t *testing.T, e *cluster.Env, name string, rules []rbacv1.PolicyRule) kubernetes.Interface {
	t.Helper()
	ctx := t.Context()
	cs := e.Client
	if _, err := cs.CoreV1().ServiceAccounts(e.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(e.Namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(e.Namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: e.Namespace}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secs := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(e.Namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tok.Status.Token
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func TestSandboxRBAC(t *testing.T) {
	e := cluster.New(t)
	e.Apply(t, ordersManifest)
	e.WaitPodsRunning(t, "app=orders", 1)
	ctx := t.Context()
	deployments := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}
	configMaps := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}
	secrets := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}
	pods := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}

	t.Run("workload forbidden", func(t *testing.T) {
		client := serviceAccountClient(t, e, "no-deployments", []rbacv1.PolicyRule{configMaps, secrets, pods})
		_, err := Resolve(ctx, client, e.Namespace, "orders", Options{})
		var fe *ForbiddenError
		if !errors.As(err, &fe) || fe.Verb != "get" || fe.Resource != "deployments.apps" ||
			!strings.Contains(err.Error(), `forbidden: not allowed to get deployments.apps "orders" in namespace "`+e.Namespace+`"`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("secret forbidden", func(t *testing.T) {
		client := serviceAccountClient(t, e, "no-secrets", []rbacv1.PolicyRule{deployments, configMaps, pods})
		_, err := Resolve(ctx, client, e.Namespace, "orders", Options{})
		var fe *ForbiddenError
		if !errors.As(err, &fe) || !errors.Is(err, ErrForbidden) || fe.Verb != "get" || fe.Resource != "secrets" || fe.Name != "orders-secret" ||
			!strings.Contains(err.Error(), `not allowed to get secrets "orders-secret" in namespace "`+e.Namespace+`" (needed for env API_TOKEN)`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("pods not listable: template fields with a warning", func(t *testing.T) {
		client := serviceAccountClient(t, e, "no-pods", []rbacv1.PolicyRule{deployments, configMaps, secrets})
		res, err := Resolve(ctx, client, e.Namespace, "orders", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if mustGet(t, res, "API_TOKEN") != "sample-token-not-a-real-secret" || mustGet(t, res, "POD_NAME") != "" || res.Pod != "" {
			t.Errorf("vars %q", pairs(res.Vars))
		}
		if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], `not allowed to list pods in namespace "`+e.Namespace+`"`) ||
			!strings.Contains(res.Warnings[1], "metadata.name is empty") {
			t.Errorf("warnings %q", res.Warnings)
		}
	})
}
