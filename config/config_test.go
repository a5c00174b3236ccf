package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	write := func(t *testing.T, dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("no file gives defaults", func(t *testing.T) {
		cfg, path, err := Load(t.TempDir())
		if err != nil || path != "" || !reflect.DeepEqual(cfg, Default()) {
			t.Fatalf("Load = %+v, %q, %v; want defaults, \"\", nil", cfg, path, err)
		}
		if cfg.Claim.Pool != "" || cfg.Claim.For.String() != "8h0m0s" {
			t.Errorf("defaults = %+v, want no pool (the cluster's default pool) for 8h", cfg.Claim)
		}
	})
	for _, name := range []string{FileName, AltFileName} {
		t.Run("reads "+name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, name, "claim: {pool: dev}\nintercepts: [{workload: orders}]\n")
			cfg, path, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if path != filepath.Join(dir, name) {
				t.Errorf("path = %q, want %q", path, filepath.Join(dir, name))
			}
			if cfg.Claim.Pool != "dev" || len(cfg.Intercepts) != 1 || cfg.Intercepts[0].Name != "orders" {
				t.Errorf("cfg = %+v", cfg)
			}
		})
	}
	t.Run("both files is ambiguous", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, FileName, "")
		write(t, dir, AltFileName, "")
		_, _, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "both .kloop.yaml and .kloop.yml exist") {
			t.Errorf("Load error = %v, want one about both files", err)
		}
	})
	t.Run("errors carry the path", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, FileName, "claim:\n  for: forever\n")
		cfg, path, err := Load(dir)
		var errs *Errors
		if cfg != nil || !errors.As(err, &errs) {
			t.Fatalf("Load = %v, %v; want *Errors", cfg, err)
		}
		if path != filepath.Join(dir, FileName) || errs.Filename != path {
			t.Errorf("path = %q, Filename = %q; want both %q", path, errs.Filename, filepath.Join(dir, FileName))
		}
		if want := path + `:2:8: claim.for: "forever" is not a duration: write one such as 8h, 90m or 1h30m`; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, FileName), 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "read kloop config") {
			t.Errorf("Load error = %v, want a read error", err)
		}
	})
}

func TestConfigIntercept(t *testing.T) {
	cfg, err := Parse("x", []byte(`intercepts:
  - name: web
    workload: deployment/frontend
  - workload: statefulset/db
  - name: api-a
    workload: api
  - name: api-b
    workload: api
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		arg      string
		wantName string // "" for no match
	}{
		{"web", "web"},
		{"frontend", "web"},            // bare workload name
		{"deployment/frontend", "web"}, // workload
		{"deploy/frontend", "web"},
		{"db", "db"},             // named after the workload
		{"statefulset/db", "db"}, // workload
		{"deployment/db", ""},    // kind differs
		{"api-b", "api-b"},
		{"api", ""},     // two intercepts of that workload: ambiguous
		{"nothing", ""}, // unknown
		{"Bad/Name", ""},
	}
	for _, tt := range tests {
		ic, ok := cfg.Intercept(tt.arg)
		switch {
		case tt.wantName == "" && ok:
			t.Errorf("Intercept(%q) = %q, want no match", tt.arg, ic.Name)
		case tt.wantName != "" && (!ok || ic.Name != tt.wantName):
			t.Errorf("Intercept(%q) = %v, %v; want %q", tt.arg, ic, ok, tt.wantName)
		}
	}
}

func TestKubeconfigPath(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"":               "",
		"~/.kube/config": filepath.Join(home, ".kube/config"),
		"~":              home,
		"kube/dev.yaml":  "/ws/kube/dev.yaml",
		"../k.yaml":      "/k.yaml",
		"/etc/k.yaml":    "/etc/k.yaml",
	} {
		got, err := (&Config{Kubeconfig: in}).KubeconfigPath("/ws")
		if err != nil || got != want {
			t.Errorf("KubeconfigPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestLoadRefusesOversizeFile: Load runs on its own for every workspace the daemon
// serves, so a huge .kloop.yaml must be refused by its size, before it is read.
func TestLoadRefusesOversizeFile(t *testing.T) {
	// valid YAML of exactly n bytes: a setting, then a comment as padding.
	yamlOf := func(n int) []byte {
		head := "claim: {pool: dev}\n# "
		return []byte(head + strings.Repeat("x", n-len(head)-1) + "\n")
	}
	tests := []struct {
		name    string
		make    func(t *testing.T, path string)
		wantErr []string // substrings; none means Load succeeds
	}{
		{name: "2 MiB", make: func(t *testing.T, path string) {
			if err := os.WriteFile(path, yamlOf(2<<20), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"too large", "2097152 bytes", "limit of 1048576 bytes"}},
		{name: "one byte over", make: func(t *testing.T, path string) {
			if err := os.WriteFile(path, yamlOf(MaxFileBytes+1), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"too large", "1048577 bytes", "limit of 1048576 bytes"}},
		{name: "endless, no size to stat", make: func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"too large", "more than 1048576 bytes"}},
		{name: "at the limit", make: func(t *testing.T, path string) {
			if err := os.WriteFile(path, yamlOf(MaxFileBytes), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			tt.make(t, path)
			done := make(chan struct{})
			var cfg *Config
			var err error
			go func() {
				defer close(done)
				cfg, _, err = Load(dir)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Load did not return within 10s")
			}
			if len(tt.wantErr) == 0 {
				if err != nil || cfg.Claim.Pool != "dev" {
					t.Fatalf("Load = %+v, %v; want the file's settings", cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded (pool %q), want an error saying the file is too large", cfg.Claim.Pool)
			}
			if !errors.Is(err, ErrFileTooLarge) {
				t.Errorf("error %q does not match ErrFileTooLarge", err)
			}
			for _, want := range append([]string{path}, tt.wantErr...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
