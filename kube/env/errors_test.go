package env

import (
	"errors"
	"strings"
	"testing"

	"github.com/kloop/kloop/kube/workload"
)

// Each error a user meets on README's loop says what to do next.
func TestErrorsSayWhatToDoNext(t *testing.T) {
	inventory, err := workload.Parse("inventory")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		err      error
		sentinel error
		want     []string
	}{
		{"workload missing from a fresh claim", &WorkloadNotFoundError{Workload: inventory, Namespace: "dev-1"}, ErrWorkloadNotFound,
			[]string{`deployment/inventory not found in namespace "dev-1"`, "deploy it there first", "`kloop status`", "deployment/NAME or statefulset/NAME"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.sentinel) {
				t.Errorf("%v does not match %v", tt.err, tt.sentinel)
			}
			for _, w := range tt.want {
				if !strings.Contains(tt.err.Error(), w) {
					t.Errorf("%q lacks %q", tt.err, w)
				}
			}
		})
	}
}
