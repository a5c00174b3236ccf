package env

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kloop/kloop/kube/workload"
)

// These tables test resolution against in-memory objects (no clientset,
// not even a fake one): the order and the rules of the kubelet. What the
// real apiserver adds (RBAC, workloads, running pods) is tested in
// sandbox_test.go.

// objects is an in-memory source of ConfigMaps and Secrets; names in
// forbidden answer Forbidden, as RBAC would.
type objects struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	forbidden  map[string]bool
}

func (o objects) configMap(_ context.Context, name string) (*corev1.ConfigMap, error) {
	if o.forbidden["configmap/"+name] {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, name, errors.New("rbac"))
	}
	if cm, ok := o.configMaps[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (o objects) secret(_ context.Context, name string) (*corev1.Secret, error) {
	if o.forbidden["secret/"+name] {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, name, errors.New("rbac"))
	}
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

var testObjects = objects{
	configMaps: map[string]*corev1.ConfigMap{
		"app":   cm("app", map[string]string{"A": "from-app", "B": "b-app", "SHARED": "app"}),
		"other": cm("other", map[string]string{"SHARED": "other", "C": "c-other"}),
		"weird": cm("weird", map[string]string{"GOOD": "1", "has=eq": "x", "ctl\x01": "y", "dotted.name": "z"}),
	},
	secrets: map[string]*corev1.Secret{
		"creds":  secret("creds", map[string]string{"token": "s3cr3t", "multi": "line1\nline2 'q' \"dq\" $HOME\n"}),
		"binary": secret("binary", map[string]string{"blob": "a\x00b", "ok": "fine"}),
	},
	forbidden: map[string]bool{"secret/locked": true},
}

func ptrTo[T any](v T) *T { return &v }

// runningPod is a pod as the apiserver reports it once running.
func runningPod(c ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "orders-7d9-abcde", Namespace: "dev", UID: "1234-uid",
			Labels:      map[string]string{"app": "orders", "tier": "web"},
			Annotations: map[string]string{"note": "say \"hi\"", "example.com/owner": "team-a"},
		},
		Spec: corev1.PodSpec{NodeName: "node-1", ServiceAccountName: "orders-sa", Containers: c},
		Status: corev1.PodStatus{
			Phase:   corev1.PodRunning,
			PodIP:   "10.0.0.7",
			PodIPs:  []corev1.PodIP{{IP: "10.0.0.7"}, {IP: "fd00::7"}},
			HostIP:  "192.168.1.10",
			HostIPs: []corev1.HostIP{{IP: "192.168.1.10"}},
		},
	}
}

func newTestResolver(pod *corev1.Pod, fromPod bool) *resolver {
	return &resolver{src: testObjects, pod: pod, container: &pod.Spec.Containers[0], fromPod: fromPod, workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}}
}

func valueEnv(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func cmKeyEnv(name, obj, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: obj}, Key: key, Optional: ptrTo(optional)}}}
}

func secretKeyEnv(name, obj, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: obj}, Key: key, Optional: ptrTo(optional)}}}
}

func resourceEnv(name, container, res, divisor string) corev1.EnvVar {
	fs := &corev1.ResourceFieldSelector{ContainerName: container, Resource: res}
	if divisor != "" {
		fs.Divisor = resource.MustParse(divisor)
	}
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: fs}}
}

func fromCM(name, prefix string, optional bool) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: ptrTo(optional)}}
}

func fromSecret(name, prefix string, optional bool) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: ptrTo(optional)}}
}

// pairs renders vars as NAME=VALUE in order, secret flags as a trailing *.
func pairs(vars []Var) []string {
	var out []string
	for _, v := range vars {
		s := v.Name + "=" + v.Value
		if v.Secret {
			s += " *"
		}
		out = append(out, s)
	}
	return out
}

func TestResolutionOrderLikeKubelet(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from     []corev1.EnvFromSource
		env      []corev1.EnvVar
		want     []string // NAME=VALUE in order, " *" when secret
		warnings []string // substrings, in any order
	}{
		{
			name: "envFrom keys sorted, later source overrides earlier in place",
			from: []corev1.EnvFromSource{fromCM("app", "", false), fromCM("other", "", false)},
			want: []string{"A=from-app", "B=b-app", "SHARED=other", "C=c-other"},
		},
		{
			name: "env overrides envFrom, keeps the first position",
			from: []corev1.EnvFromSource{fromCM("app", "", false)},
			env:  []corev1.EnvVar{valueEnv("B", "env-b"), valueEnv("Z", "z")},
			want: []string{"A=from-app", "B=env-b", "SHARED=app", "Z=z"},
		},
		{
			name: "prefixes",
			from: []corev1.EnvFromSource{fromCM("app", "APP_", false), fromSecret("creds", "S_", false)},
			want: []string{"APP_A=from-app", "APP_B=b-app", "APP_SHARED=app", "S_multi=line1\nline2 'q' \"dq\" $HOME\n *", "S_token=s3cr3t *"},
		},
		{
			name: "expansion sees envFrom and earlier env, not later env; undefined left as is",
			from: []corev1.EnvFromSource{fromCM("app", "", false)},
			env: []corev1.EnvVar{
				valueEnv("X", "$(A)/$(LATER)/$(NOPE)"),
				valueEnv("LATER", "later"),
				valueEnv("Y", "$(X)+$(LATER)"),
			},
			want: []string{"A=from-app", "B=b-app", "SHARED=app", "X=from-app/$(LATER)/$(NOPE)", "LATER=later", "Y=from-app/$(LATER)/$(NOPE)+later"},
		},
		{
			name: "$$ escapes, bare $ kept, no recursive expansion",
			env: []corev1.EnvVar{
				valueEnv("REF", "$(HOME)"),
				valueEnv("E", "$$(REF) $(REF) $HOME $$ $"),
			},
			want: []string{"REF=$(HOME)", "E=$(REF) $(HOME) $HOME $ $"},
		},
		{
			name: "a duplicate env entry wins and expands the earlier one",
			env:  []corev1.EnvVar{valueEnv("P", "one"), valueEnv("Q", "q"), valueEnv("P", "$(P)-two")},
			want: []string{"P=one-two", "Q=q"},
		},
		{
			name: "empty value with no source is set, empty",
			env:  []corev1.EnvVar{{Name: "EMPTY"}},
			want: []string{"EMPTY="},
		},
		{
			name: "secret taints what expands it",
			env:  []corev1.EnvVar{secretKeyEnv("TOKEN", "creds", "token", false), valueEnv("AUTH", "Bearer $(TOKEN)"), valueEnv("PLAIN", "$$(TOKEN)")},
			want: []string{"TOKEN=s3cr3t *", "AUTH=Bearer s3cr3t *", "PLAIN=$(TOKEN)"},
		},
		{
			name: "configMapKeyRef and secretKeyRef with multiline value",
			env:  []corev1.EnvVar{cmKeyEnv("CA", "other", "C", false), secretKeyEnv("M", "creds", "multi", false)},
			want: []string{"CA=c-other", "M=line1\nline2 'q' \"dq\" $HOME\n *"},
		},
		{
			name: "optional refs missing are skipped",
			from: []corev1.EnvFromSource{fromCM("absent", "", true), fromSecret("absent", "", true)},
			env: []corev1.EnvVar{
				cmKeyEnv("NO_CM", "absent", "k", true), cmKeyEnv("NO_KEY", "app", "missing", true),
				secretKeyEnv("NO_SEC", "absent", "k", true), secretKeyEnv("NO_SKEY", "creds", "missing", true),
				valueEnv("AFTER", "$(NO_CM)"),
			},
			want:     []string{"AFTER=$(NO_CM)"},
			warnings: []string{`optional ConfigMap "absent" not found`, `optional key "missing" not in Secret "creds"`},
		},
		{
			name:     "values with a NUL byte are skipped and reported",
			from:     []corev1.EnvFromSource{fromSecret("binary", "", false)},
			env:      []corev1.EnvVar{secretKeyEnv("BLOB", "binary", "blob", false)},
			want:     []string{"ok=fine *"},
			warnings: []string{`blob (from secret "binary" key "blob") contains a NUL byte`, `BLOB (from secret "binary" key "blob") contains a NUL byte`},
		},
		{
			name:     "invalid envFrom keys skipped and reported, relaxed names kept",
			from:     []corev1.EnvFromSource{fromCM("weird", "", false)},
			want:     []string{"GOOD=1", "dotted.name=z"},
			warnings: []string{`keys ["ctl\x01", "has=eq"] of ConfigMap "weird" are not valid environment variable names; skipped`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestResolver(runningPod(corev1.Container{Name: "app", EnvFrom: tc.from, Env: tc.env}), true)
			vars, err := r.env(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(vars); !slices.Equal(got, tc.want) {
				t.Errorf("vars:\n got %q\nwant %q", got, tc.want)
			}
			for _, w := range tc.warnings {
				if !slices.ContainsFunc(r.warnings, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("no warning containing %q in %q", w, r.warnings)
				}
			}
			for _, w := range r.warnings {
				if strings.Contains(w, "s3cr3t") || strings.Contains(w, "line1") {
					t.Errorf("warning leaks a secret value: %q", w)
				}
			}
		})
	}
}

func TestMissingRequiredRefsNameObjectAndKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		from []corev1.EnvFromSource
		env  []corev1.EnvVar
		want string
		kind string
	}{
		{"configmap", nil, []corev1.EnvVar{cmKeyEnv("X", "absent", "k", false)}, `env X: ConfigMap "absent" not found in namespace "dev"`, "ConfigMap"},
		{"configmap key", nil, []corev1.EnvVar{cmKeyEnv("X", "app", "nokey", false)}, `env X: ConfigMap "app" in namespace "dev" has no key "nokey"`, "ConfigMap"},
		{"secret", nil, []corev1.EnvVar{secretKeyEnv("X", "absent", "k", false)}, `env X: Secret "absent" not found in namespace "dev"`, "Secret"},
		{"secret key", nil, []corev1.EnvVar{secretKeyEnv("X", "creds", "nokey", false)}, `env X: Secret "creds" in namespace "dev" has no key "nokey"`, "Secret"},
		{"envFrom configmap", []corev1.EnvFromSource{fromCM("app", "", false), fromCM("absent", "", false)}, nil, `envFrom[1]: ConfigMap "absent" not found`, "ConfigMap"},
		{"envFrom secret", []corev1.EnvFromSource{fromSecret("absent", "", false)}, nil, `envFrom[0]: Secret "absent" not found`, "Secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestResolver(runningPod(corev1.Container{Name: "app", EnvFrom: tc.from, Env: tc.env}), true)
			_, err := r.env(context.Background())
			var me *MissingRefError
			if !errors.As(err, &me) || !errors.Is(err, ErrMissingRef) {
				t.Fatalf("err = %v, want a MissingRefError", err)
			}
			if !strings.Contains(err.Error(), tc.want) || me.Kind != tc.kind {
				t.Errorf("err = %q, want it to contain %q (kind %s)", err, tc.want, tc.kind)
			}
		})
	}
}

func TestForbiddenSecretNamesVerbAndResource(t *testing.T) {
	r := newTestResolver(runningPod(corev1.Container{Name: "app", Env: []corev1.EnvVar{secretKeyEnv("T", "locked", "k", true)}}), true)
	_, err := r.env(context.Background())
	var fe *ForbiddenError
	if !errors.As(err, &fe) || !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v, want ForbiddenError (even for an optional ref: forbidden is not missing)", err)
	}
	if fe.Verb != "get" || fe.Resource != "secrets" || fe.Name != "locked" || !strings.Contains(err.Error(), `not allowed to get secrets "locked" in namespace "dev" (needed for env T)`) {
		t.Errorf("err = %q (%+v)", err, fe)
	}
}

func TestFieldRefsFromRunningPod(t *testing.T) {
	env := []corev1.EnvVar{
		fieldEnv("NAME", "metadata.name"), fieldEnv("NS", "metadata.namespace"), fieldEnv("UID", "metadata.uid"),
		fieldEnv("APP", "metadata.labels['app']"), fieldEnv("NOLABEL", "metadata.labels['none']"),
		fieldEnv("OWNER", "metadata.annotations['example.com/owner']"),
		fieldEnv("LABELS", "metadata.labels"), fieldEnv("ANN", "metadata.annotations"),
		fieldEnv("NODE", "spec.nodeName"), fieldEnv("HOST", "spec.host"), fieldEnv("SA", "spec.serviceAccountName"),
		fieldEnv("IP", "status.podIP"), fieldEnv("IPS", "status.podIPs"),
		fieldEnv("HOSTIP", "status.hostIP"), fieldEnv("HOSTIPS", "status.hostIPs"),
		valueEnv("URL", "http://$(IP):8080/$(NAME)"),
	}
	r := newTestResolver(runningPod(corev1.Container{Name: "app", Env: env}), true)
	vars, err := r.env(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"NAME=orders-7d9-abcde", "NS=dev", "UID=1234-uid", "APP=orders", "NOLABEL=", "OWNER=team-a",
		"LABELS=app=\"orders\"\ntier=\"web\"", "ANN=example.com/owner=\"team-a\"\nnote=\"say \\\"hi\\\"\"",
		"NODE=node-1", "HOST=node-1", "SA=orders-sa", "IP=10.0.0.7", "IPS=10.0.0.7,fd00::7",
		"HOSTIP=192.168.1.10", "HOSTIPS=192.168.1.10", "URL=http://10.0.0.7:8080/orders-7d9-abcde",
	}
	if got := pairs(vars); !slices.Equal(got, want) {
		t.Errorf("vars:\n got %q\nwant %q", got, want)
	}
	if len(r.warnings) != 0 {
		t.Errorf("warnings with a running pod: %q", r.warnings)
	}
	for _, bad := range []string{"metadata.labels['Bad Key!']", "spec.restartPolicy", "status.phase['x']"} {
		r := newTestResolver(runningPod(corev1.Container{Name: "app", Env: []corev1.EnvVar{fieldEnv("X", bad)}}), true)
		if _, err := r.env(context.Background()); err == nil || !strings.Contains(err.Error(), "env X: fieldRef") {
			t.Errorf("fieldRef %s: err = %v, want an error naming the variable and the field", bad, err)
		}
	}
}

func TestFieldRefsWithoutRunningPodWarn(t *testing.T) {
	tmpl := &target{workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}, namespace: "dev", template: corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "orders"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
			fieldEnv("NAME", "metadata.name"), fieldEnv("NS", "metadata.namespace"), fieldEnv("APP", "metadata.labels['app']"),
			fieldEnv("SA", "spec.serviceAccountName"), fieldEnv("IP", "status.podIP"),
		}}}},
	}}
	pod := podFor(tmpl, nil)
	r := newTestResolver(pod, false)
	vars, err := r.env(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"NAME=", "NS=dev", "APP=orders", "SA=default", "IP="}
	if got := pairs(vars); !slices.Equal(got, want) {
		t.Errorf("vars:\n got %q\nwant %q", got, want)
	}
	if len(r.warnings) != 2 || !strings.Contains(r.warnings[0], "NAME: no running pod of deployment/orders, so metadata.name is empty") ||
		!strings.Contains(r.warnings[1], "status.podIP is empty") {
		t.Errorf("warnings = %q", r.warnings)
	}
}

func TestResourceFieldRefs(t *testing.T) {
	q := resource.MustParse
	app := corev1.Container{Name: "app", Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1500m"), corev1.ResourceMemory: q("1Gi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m"), corev1.ResourceMemory: q("100M")},
	}}
	side := corev1.Container{Name: "side", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("64Mi")}}}
	node := &corev1.Node{Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
		corev1.ResourceCPU: q("8"), corev1.ResourceMemory: q("32Gi"), corev1.ResourceEphemeralStorage: q("100Gi")}}}
	app.Env = []corev1.EnvVar{
		resourceEnv("CPU", "", "limits.cpu", ""),                     // ceil(1.5) = 2
		resourceEnv("CPU_M", "", "limits.cpu", "1m"),                 // 1500
		resourceEnv("REQ_CPU_M", "", "requests.cpu", "1m"),           // 250
		resourceEnv("REQ_CPU", "", "requests.cpu", ""),               // ceil(0.25) = 1
		resourceEnv("MEM", "", "limits.memory", ""),                  // bytes
		resourceEnv("MEM_MI", "", "limits.memory", "1Mi"),            // 1024
		resourceEnv("REQ_MEM_MI", "", "requests.memory", "1Mi"),      // ceil(100e6/1048576) = 96
		resourceEnv("EPH", "", "limits.ephemeral-storage", "1Gi"),    // no limit: node allocatable 100
		resourceEnv("REQ_EPH", "", "requests.ephemeral-storage", ""), // no request: 0
		resourceEnv("SIDE_MEM", "side", "limits.memory", "1Mi"),      // 64
		resourceEnv("SIDE_CPU", "side", "limits.cpu", "1m"),          // no limit: node 8000
		resourceEnv("SIDE_REQ", "side", "requests.memory", "1Mi"),    // defaulted from limit: 64
	}
	pod := podFor(&target{namespace: "dev", template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{app, side}}}}, runningPod())
	r := newTestResolver(pod, true)
	r.node, r.nodeRead = node, true
	vars, err := r.env(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CPU=2", "CPU_M=1500", "REQ_CPU_M=250", "REQ_CPU=1", "MEM=1073741824", "MEM_MI=1024", "REQ_MEM_MI=96",
		"EPH=100", "REQ_EPH=0", "SIDE_MEM=64", "SIDE_CPU=8000", "SIDE_REQ=64"}
	if got := pairs(vars); !slices.Equal(got, want) {
		t.Errorf("vars:\n got %q\nwant %q", got, want)
	}

	// Pod-level limits replace the node's allocatable (cpu, memory).
	pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("3")}}
	r = newTestResolver(pod, true)
	r.node, r.nodeRead = node, true
	r.container.Env = []corev1.EnvVar{resourceEnv("SIDE_CPU", "side", "limits.cpu", "")}
	if vars, err := r.env(context.Background()); err != nil || pairs(vars)[0] != "SIDE_CPU=3" {
		t.Errorf("with a pod-level limit: %q, %v", pairs(vars), err)
	}

	// No node to default from: the variable is left out, with a warning.
	r = newTestResolver(pod, true)
	r.container.Env = []corev1.EnvVar{resourceEnv("EPH", "", "limits.ephemeral-storage", ""), resourceEnv("CPU", "", "limits.cpu", "")}
	vars, err = r.env(context.Background())
	if err != nil || !slices.Equal(pairs(vars), []string{"CPU=2"}) {
		t.Errorf("without a node: %q, %v", pairs(vars), err)
	}
	if len(r.warnings) != 1 || !strings.Contains(r.warnings[0], "EPH: container app has no limits.ephemeral-storage") {
		t.Errorf("warnings = %q", r.warnings)
	}

	r = newTestResolver(pod, true)
	r.container.Env = []corev1.EnvVar{resourceEnv("X", "", "limits.gpu", "")}
	if _, err := r.env(context.Background()); err == nil || !strings.Contains(err.Error(), `env X: resourceFieldRef: unsupported container resource "limits.gpu"`) {
		t.Errorf("unsupported resource: %v", err)
	}
}

// Resolve reads its reference with workload.Parse and reports what does not
// parse as ErrBadWorkload, in workload.Parse's words, before it asks the
// cluster anything (the client here is nil).
func TestResolveBadWorkload(t *testing.T) {
	for _, in := range []string{"daemonset/x", "", "deployment/", "deployment/Bad_Name", "pod/x", "DEPLOY/x", "deployments.extensions/x"} {
		_, err := Resolve(context.Background(), nil, "dev", in, Options{})
		_, perr := workload.Parse(in)
		if !errors.Is(err, ErrBadWorkload) || perr == nil || err.Error() != perr.Error() {
			t.Errorf("Resolve(%q): err = %v, want ErrBadWorkload saying %v", in, err, perr)
		}
	}
}

func TestChooseContainer(t *testing.T) {
	tg := &target{workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}, template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: AgentContainer}, {Name: "orders"}, {Name: "side"}}}}}
	if i, err := chooseContainer(tg, ""); err != nil || i != 1 {
		t.Errorf("default container: %d, %v; want 1 (the first that is not the agent)", i, err)
	}
	if i, err := chooseContainer(tg, "side"); err != nil || i != 2 {
		t.Errorf("named container: %d, %v", i, err)
	}
	_, err := chooseContainer(tg, "nope")
	if !errors.Is(err, ErrContainerNotFound) || err.Error() != `deployment/orders has no container "nope" (containers: kloop-agent, orders, side)` {
		t.Errorf("err = %v", err)
	}
	tg.template.Spec.Containers = tg.template.Spec.Containers[:1]
	if _, err := chooseContainer(tg, ""); !errors.Is(err, ErrContainerNotFound) || !strings.Contains(err.Error(), "no container besides kloop-agent") {
		t.Errorf("only the agent: %v", err)
	}
}

func TestServiceLinkVarsExpandAndComeLast(t *testing.T) {
	r := newTestResolver(runningPod(corev1.Container{Name: "app", Env: []corev1.EnvVar{
		valueEnv("USERS", "http://$(USERS_SERVICE_HOST):$(USERS_SERVICE_PORT)"),
		valueEnv("USERS_SERVICE_PORT", "9999"), // the container's own definition wins
	}}), true)
	r.services = map[string]string{"USERS_SERVICE_HOST": "10.96.0.20", "USERS_SERVICE_PORT": "8080", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
	vars, err := r.env(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"USERS=http://10.96.0.20:8080", "USERS_SERVICE_PORT=9999", "KUBERNETES_SERVICE_HOST=10.96.0.1", "USERS_SERVICE_HOST=10.96.0.20"}
	if got := pairs(vars); !slices.Equal(got, want) {
		t.Errorf("vars:\n got %q\nwant %q", got, want)
	}
}

func TestPickPod(t *testing.T) {
	now := metav1.Now()
	older := metav1.NewTime(now.Add(-time.Hour))
	pod := func(name, owner, hash string, phase corev1.PodPhase, ready bool, created metav1.Time) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created, Labels: map[string]string{"pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: owner, Controller: ptrTo(true)}}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "orders"}}},
			Status: corev1.PodStatus{Phase: phase}}
		if ready {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		return p
	}
	w := workload.Workload{Kind: workload.Deployment, Name: "orders"}
	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"none", nil, ""},
		{"pending only", []corev1.Pod{pod("a", "orders-h1", "h1", corev1.PodPending, false, now)}, ""},
		{"ready beats newer", []corev1.Pod{pod("new", "orders-h1", "h1", corev1.PodRunning, false, now), pod("old", "orders-h1", "h1", corev1.PodRunning, true, older)}, "old"},
		{"newest of the ready", []corev1.Pod{pod("old", "orders-h1", "h1", corev1.PodRunning, true, older), pod("new", "orders-h2", "h2", corev1.PodRunning, true, now)}, "new"},
		{"another deployment with a longer name is not ours", []corev1.Pod{pod("v2", "orders-v2-h9", "h9", corev1.PodRunning, true, now)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickPod(tc.pods, w, "orders")
			if (got == nil && tc.want != "") || (got != nil && got.Name != tc.want) {
				t.Errorf("picked %v, want %q", got, tc.want)
			}
		})
	}
}
