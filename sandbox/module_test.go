package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleLine(t *testing.T) {
	for _, tt := range []struct{ gomod, want string }{
		{"module example.com/shop\n\ngo 1.26\n", "example.com/shop"},
		{"// a comment\nmodule   github.com/kloop/kloop // the tool\n", "github.com/kloop/kloop"},
		{"module \"example.com/quoted\"\n", "example.com/quoted"},
		{"modules are not this\nmodule x\n", "x"},
		{"go 1.26\n", ""},
	} {
		if got := moduleLine([]byte(tt.gomod)); got != tt.want {
			t.Errorf("moduleLine(%q) = %q, want %q", tt.gomod, got, tt.want)
		}
	}
}

func TestModulePathFindsTheNearestGoMod(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/shop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "cmd", "pricing")
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	if got, err := ModulePath(deep); err != nil || got != "example.com/shop" {
		t.Errorf("ModulePath(%s) = %q, %v; want example.com/shop", deep, got, err)
	}
	if got, err := ModulePath("/"); err != nil || got != "" {
		t.Errorf("ModulePath(/) = %q, %v; want none", got, err)
	}
}
