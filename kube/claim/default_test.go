package claim

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// poolConfigMap is a pool as `kloop pool create` declares it.
func poolConfigMap(name string, isDefault bool) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: PoolConfigMapPrefix + name, Namespace: DefaultNamespace, Labels: map[string]string{LabelPool: name}},
		Data:       map[string]string{PoolDataKey: "slots:\n  - {name: " + name + "-1, kind: namespace, namespace: " + name + "-1}\n"},
	}
	if isDefault {
		cm.Annotations = map[string]string{AnnotationDefault: "true"}
	}
	return cm
}

// TestPoolWithoutANameIsTheDefault is which pool `kloop claim` takes with no
// --pool and no claim.pool in .kloop.yaml.
func TestPoolWithoutANameIsTheDefault(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pools []*corev1.ConfigMap
		ask   string
		want  string
		// wantErr lists what the error says; empty means no error.
		wantErr []string
	}{
		{name: "the pool marked default", pools: []*corev1.ConfigMap{poolConfigMap("ci", false), poolConfigMap("dev", true)}, want: "dev"},
		{name: "marked default wins over one named default", pools: []*corev1.ConfigMap{poolConfigMap("default", false), poolConfigMap("dev", true)}, want: "dev"},
		{name: "the only pool", pools: []*corev1.ConfigMap{poolConfigMap("dev", false)}, want: "dev"},
		{name: "a pool named default", pools: []*corev1.ConfigMap{poolConfigMap("ci", false), poolConfigMap("default", false)}, want: "default"},
		{name: "a named pool, not the default", pools: []*corev1.ConfigMap{poolConfigMap("ci", false), poolConfigMap("dev", true)}, ask: "ci", want: "ci"},
		{name: "several and none default", pools: []*corev1.ConfigMap{poolConfigMap("ci", false), poolConfigMap("dev", false)},
			wantErr: []string{"no pool is marked default", "available pools: ci, dev", "--pool"}},
		{name: "two marked default", pools: []*corev1.ConfigMap{poolConfigMap("ci", true), poolConfigMap("dev", true)},
			wantErr: []string{"pools ci, dev are all marked default", "--pool"}},
		{name: "no pools", wantErr: []string{"no pools exist", "kloop pool create NAME --namespaces N --default"}},
		{name: "a named pool that does not exist", pools: []*corev1.ConfigMap{poolConfigMap("dev", true)}, ask: "default",
			wantErr: []string{`pool "default" not found`, "available pools: dev"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]runtime.Object, len(tc.pools))
			for i, cm := range tc.pools {
				objs[i] = cm
			}
			c := &catalog{cs: fake.NewClientset(objs...), namespace: DefaultNamespace}
			p, err := c.pool(t.Context(), tc.ask)
			if len(tc.wantErr) == 0 {
				if err != nil || p.Name != tc.want {
					t.Fatalf("pool(%q) = %+v, %v; want %s", tc.ask, p, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("pool(%q) = %s, want an error saying %q", tc.ask, p.Name, tc.wantErr)
			}
			if !errors.Is(err, ErrPoolNotFound) {
				t.Errorf("error %v does not match ErrPoolNotFound", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
