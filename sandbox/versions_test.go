package sandbox

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The embedded staging list must be exactly the one k8s.io/kubernetes
// replaces with ./staging directories, or the build cannot resolve.
func TestStagingModulesMatchKubernetesGoMod(t *testing.T) {
	out, err := exec.Command("go", "mod", "download", "-json", kubernetesModule+"@"+KubernetesVersion).Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v", kubernetesModule, KubernetesVersion, err)
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil || info.GoMod == "" {
		t.Fatalf("go mod download -json gave no go.mod path: %v: %s", err, out)
	}
	data, err := os.ReadFile(info.GoMod)
	if err != nil {
		t.Fatal(err)
	}
	got := stagingReplaces(string(data))
	slices.Sort(got)
	want := slices.Clone(stagingModules)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("k8s.io/kubernetes %s replaces %v\nembedded list is %v", KubernetesVersion, got, want)
	}
}

func TestKubeGoModReplacesEveryStagingModule(t *testing.T) {
	mod := kubeGoMod()
	if !strings.Contains(mod, "require k8s.io/kubernetes "+KubernetesVersion+"\n") {
		t.Errorf("go.mod does not require kubernetes %s:\n%s", KubernetesVersion, mod)
	}
	for _, m := range stagingModules {
		if !strings.Contains(mod, "\t"+m+" => "+m+" "+StagingVersion+"\n") {
			t.Errorf("go.mod lacks replace of %s:\n%s", m, mod)
		}
	}
}

func TestStagingReplaces(t *testing.T) {
	tests := []struct {
		name, goMod string
		want        []string
	}{
		{"block", "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tfoo => foo v1.0.0\n)\n", []string{"k8s.io/api"}},
		{"single line", "replace k8s.io/kms => ./staging/src/k8s.io/kms\n", []string{"k8s.io/kms"}},
		{"none", "module x\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stagingReplaces(tt.goMod); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLDFlagsStampVersion(t *testing.T) {
	flags := kubeLDFlags()
	for _, want := range []string{"version.gitVersion=" + KubernetesVersion, "version.gitMajor=1 ", "version.gitMinor=37 "} {
		if !strings.Contains(flags, want) {
			t.Errorf("ldflags %q lack %q", flags, want)
		}
	}
}
