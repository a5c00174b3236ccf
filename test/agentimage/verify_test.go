package agentimage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/internal/agentimage"
	"github.com/kloop/kloop/test/cluster"
)

// TestPullChecksPlatformAndAgentContract: images that resolve but are not
// runnable as the agent here are refused before anything runs, each with
// the reason a kubelet would give: an index without the node's platform
// (ErrImagePull), and an image running as root (CreateContainerError).
// The images are assembled from a stand-in file, not built: what is under
// test is the runner's pull, not the binary.
func TestPullChecksPlatformAndAgentContract(t *testing.T) {
	reg := cluster.StartRegistry(t)
	env := cluster.New(t)
	env.StartStandIns(t, cluster.DefaultImages(), cluster.WithRegistry(reg, agentimage.Verify))
	epoch := time.Unix(0, 0).UTC()
	bin := []byte("#!/bin/false\n")

	push := func(tag string, idx v1.ImageIndex) string {
		t.Helper()
		ref, err := name.NewTag(reg.Host + "/kloop/agent:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref, idx); err != nil {
			t.Fatal(err)
		}
		return ref.String()
	}
	arm, err := agentimage.Image(bin, v1.Platform{OS: "linux", Architecture: "arm64"}, "v1", epoch)
	if err != nil {
		t.Fatal(err)
	}
	armOnly, _ := agentimage.Index([]v1.Image{arm}, "v1")
	amd, _ := agentimage.Image(bin, v1.Platform{OS: "linux", Architecture: "amd64"}, "v1", epoch)
	cf, _ := amd.ConfigFile()
	c := cf.Config
	c.User = "0"
	rootImg, err := mutate.Config(amd, c)
	if err != nil {
		t.Fatal(err)
	}
	rootIdx, _ := agentimage.Index([]v1.Image{rootImg}, "v1")

	for _, tc := range []struct {
		pod, image, reason string
		message            []string
	}{
		{"arm-only", push("arm-only", armOnly), "ErrImagePull", []string{"no match for platform linux/amd64", "it has linux/arm64"}},
		{"as-root", push("as-root", rootIdx), "CreateContainerError", []string{"not a kloop agent image", `user "0" is root`}},
	} {
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
    - name: kloop-agent
      image: %s
`, tc.pod, tc.image)
		if err := env.ApplyYAML(context.Background(), []byte(manifest)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(cluster.WaitTimeout)
		var got string
		for {
			pod, err := env.Client.CoreV1().Pods(env.Namespace).Get(context.Background(), tc.pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cs := containerStatus(pod, "kloop-agent"); cs != nil && cs.State.Waiting != nil {
				got = cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
				if cs.State.Waiting.Reason == tc.reason {
					for _, m := range tc.message {
						if !strings.Contains(cs.State.Waiting.Message, m) {
							t.Errorf("%s: message %q lacks %q", tc.pod, cs.State.Waiting.Message, m)
						}
					}
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: agent container never waiting with %s; last %q", tc.pod, tc.reason, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
