package claim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/test/cluster"
)

// The tests of this package run against one real sandbox cluster: a real
// apiserver, controller manager (so garbage collection and namespace
// deletion happen) and kwok nodes.
func TestMain(m *testing.M) { cluster.Main(m) }

// testCluster returns the sandbox cluster shared by this test binary, as a
// cluster admin.
func testCluster(t testing.TB) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	c := cluster.Shared(t)
	cfg := rest.CopyConfig(c.Config)
	// The concurrent-claimers test is a burst by design.
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, kubernetes.NewForConfigOrDie(cfg)
}

// kindResources maps the kinds deploy/ uses to their resources.
var kindResources = map[string]struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}{
	"Namespace":   {schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false},
	"ConfigMap":   {schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, true},
	"Role":        {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, true},
	"RoleBinding": {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, true},
	"ClusterRole": {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, false},
}

// applyDeploy applies deploy/claimer-rbac.yaml as a cluster admin would:
// every object created, or updated when it exists. Tests that change the
// claimers' RoleBinding only ever add subjects, so re-applying is harmless
// to them... except that it resets the subjects; keepSubjects preserves
// those added by other tests.
func applyDeploy(t testing.TB, cfg *rest.Config) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/claimer-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/claimer-rbac.yaml: %v", err)
		}
		if doc == nil {
			continue
		}
		obj := &unstructured.Unstructured{Object: doc}
		kr, ok := kindResources[obj.GetKind()]
		if !ok {
			t.Fatalf("deploy/claimer-rbac.yaml: kind %s not known to the test", obj.GetKind())
		}
		var ri dynamic.ResourceInterface = dyn.Resource(kr.gvr)
		if kr.namespaced {
			ri = dyn.Resource(kr.gvr).Namespace(obj.GetNamespace())
		}
		_, err := ri.Create(t.Context(), obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			if obj.GetKind() == "RoleBinding" || obj.GetKind() == "Namespace" {
				continue // keep subjects other tests added
			}
			cur, gerr := ri.Get(t.Context(), obj.GetName(), metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			obj.SetResourceVersion(cur.GetResourceVersion())
			_, err = ri.Update(t.Context(), obj, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("apply %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

var poolSeq atomic.Int64

// newPool creates a namespace pool of n slots, named after the test, and
// deletes it when the test ends.
func newPool(t testing.TB, cfg *rest.Config, n int) string {
	t.Helper()
	applyDeploy(t, cfg)
	return createPool(t, cfg, func(admin *PoolAdmin, name string) error {
		_, err := admin.CreateNamespacePool(t.Context(), name, n, CreateOptions{})
		return err
	})
}

// testName is a pool or namespace name unique to the test and the call.
func testName(t testing.TB) string {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("t%x-%d", h.Sum32(), poolSeq.Add(1))
}

// createPool runs create with a fresh pool name and deletes the pool when
// the test ends.
func createPool(t testing.TB, cfg *rest.Config, create func(admin *PoolAdmin, name string) error) string {
	t.Helper()
	name := testName(t)
	admin, err := NewPoolAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := create(admin, name); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin.Delete(ctx, name, true, nil); err != nil {
			t.Errorf("delete pool %s: %v", name, err)
		}
	})
	return name
}

func newClaimer(t testing.TB, cfg *rest.Config, holder string, opts ...Option) *Claimer {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))}, opts...)
	c, err := NewClaimer(cfg, holder, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 2 minutes", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
