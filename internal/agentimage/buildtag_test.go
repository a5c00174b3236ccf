package agentimage

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The agent image's kloop (BuildTag) links only the in-cluster face: a
// file of cmd/kloop that forgets its !agentonly constraint would pull the
// daemon, client-go and Delve back into every intercepted pod, and the
// agent's memory with them.
func TestAgentBuildLeavesTheDaemonOut(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	src, err := FindSource(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-tags="+BuildTag, "-deps", "./cmd/kloop")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -tags=%s -deps ./cmd/kloop: %v", BuildTag, err)
	}
	deps := strings.Fields(string(out))
	for _, banned := range []string{"k8s.io/client-go/kubernetes", "github.com/go-delve/delve/service", MainModule + "/server", MainModule + "/session", MainModule + "/kube/intercept"} {
		for _, d := range deps {
			if d == banned || strings.HasPrefix(d, banned+"/") {
				t.Errorf("the agent build links %s; give the cmd/kloop file that imports it //go:build !agentonly", d)
				break
			}
		}
	}
	if !slices.Contains(deps, MainModule+"/agent") {
		t.Errorf("the agent build does not link %s/agent: %v", MainModule, deps)
	}
}
