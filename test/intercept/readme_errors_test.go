package intercept_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
)

// TestREADMELoopErrorsSayTheNextCommand: the mistakes a new user makes on
// README.md's loop, typed through the CLI, each end in an error that names
// the command (or step) to run next.
func TestREADMELoopErrorsSayTheNextCommand(t *testing.T) {
	shared := cluster.Shared(t)
	// The admin has set the cluster up (claimer RBAC) but made no pool yet.
	applyClaimerRBAC(t, shared.Config)
	env := cluster.New(t)
	env.Apply(t, filepath.Join("..", "testdata", "inventory.yaml"))

	ws := t.TempDir()
	copySample(t, filepath.Join("..", "testdata", "inventory"), ws)
	write(t, filepath.Join(ws, "go.mod"), "module github.com/kloop/kloop/test/testdata/inventory\n\ngo 1.26\n")

	tests := []struct {
		name       string
		kubeconfig string // the developer's $KUBECONFIG
		args       []string
		want       []string
	}{
		{"intercept with no claim and no kubeconfig", filepath.Join(t.TempDir(), "none"),
			[]string{"intercept", "inventory", "--program", "./cmd/inventory"},
			[]string{"no kubeconfig found", "`kloop claim`", "`kloop sandbox up`"}},
		{"claim with no pool in the cluster", shared.Kubeconfig,
			[]string{"claim"},
			[]string{"no pool to claim from", "`kloop pool create NAME --namespaces N --default`"}},
		{"leave of a workload not intercepted", env.Kubeconfig,
			[]string{"leave", "inventory"},
			[]string{"deployment/inventory is not intercepted", "`kloop status`"}},
		{"intercept of a workload not deployed there", env.Kubeconfig,
			[]string{"intercept", "orders", "--program", "./cmd/inventory"},
			[]string{`deployment/orders not found in namespace "` + env.Namespace + `"`, "deploy it there first", "`kloop status`"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			daemon := editor.NewEnv(t, binary(t))
			daemon.Extra = []string{"KUBECONFIG=" + tt.kubeconfig}
			r := runKloop(t, daemon, ws, tt.args...)
			if r.err == nil {
				t.Fatalf("kloop %s succeeded:\n%s", strings.Join(tt.args, " "), r.stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("kloop %s said %q, want it to say %q", strings.Join(tt.args, " "), strings.TrimSpace(r.stderr), w)
				}
			}
			if st := statusOf(t, daemon, ws); st.Claim != nil || len(st.Intercepts) != 0 {
				t.Errorf("a failed kloop %s left %+v", strings.Join(tt.args, " "), st)
			}
		})
	}
}
