package intercept_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/test/cluster"
)

// TestAgentImagePrecedence: KLOOP_AGENT_IMAGE, else the workspace's
// agentImage, else what the cluster admin set in kloop-system/kloop-config
// (readable by any user once set), else kloop's default tagged with its
// version. Run against the sandbox's API server, as a developer who has no
// other right in the cluster.
func TestAgentImagePrecedence(t *testing.T) {
	env := cluster.New(t)
	ctx := context.Background()
	dev := rest.CopyConfig(env.Config)
	dev.Impersonate = rest.ImpersonationConfig{UserName: "dev@example.com", Groups: []string{"system:authenticated"}}
	devClient, err := kubernetes.NewForConfig(dev)
	if err != nil {
		t.Fatal(err)
	}

	// Before the admin sets one: the default, whatever the user may read.
	got, err := intercept.ResolveImage(ctx, devClient, intercept.ImageOptions{})
	if err != nil || got.Ref != intercept.DefaultImage() || got.Source != intercept.SourceDefault {
		t.Fatalf("with nothing set: %+v, %v; want the default %s", got, err, intercept.DefaultImage())
	}

	const clusterRef = "registry.example.com/kloop/agent:v9.9.9"
	if err := intercept.SetClusterImage(ctx, env.Client, clusterRef); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().ConfigMaps(intercept.ConfigNamespace).Delete(context.Background(), intercept.ConfigMapName, metav1.DeleteOptions{})
	})
	// Set twice: the second run updates, as an admin changing it would.
	if err := intercept.SetClusterImage(ctx, env.Client, clusterRef); err != nil {
		t.Fatalf("set the cluster's agent image again: %v", err)
	}
	if err := intercept.SetClusterImage(ctx, env.Client, "Not A Ref"); err == nil {
		t.Error("SetClusterImage took a reference that is not one")
	}

	tests := []struct {
		name       string
		opts       intercept.ImageOptions
		wantRef    string
		wantSource string
	}{
		{"the cluster's", intercept.ImageOptions{}, clusterRef, intercept.SourceCluster},
		{"the workspace's over the cluster's", intercept.ImageOptions{Workspace: "localhost:5000/mine/agent:dev"}, "localhost:5000/mine/agent:dev", intercept.SourceWorkspace},
		{"KLOOP_AGENT_IMAGE over both", intercept.ImageOptions{Env: "localhost:5000/ci/agent:t1", Workspace: "localhost:5000/mine/agent:dev"}, "localhost:5000/ci/agent:t1", intercept.SourceEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := intercept.ResolveImage(ctx, devClient, tt.opts)
			if err != nil || got.Ref != tt.wantRef || got.Source != tt.wantSource {
				t.Errorf("ResolveImage(%+v) = %+v, %v; want %s from %s", tt.opts, got, err, tt.wantRef, tt.wantSource)
			}
		})
	}
	if _, err := intercept.ResolveImage(ctx, devClient, intercept.ImageOptions{Workspace: "https://x/agent"}); err == nil {
		t.Error("a workspace agentImage that is not a reference was taken")
	}
}
