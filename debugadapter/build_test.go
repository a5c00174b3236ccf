package debugadapter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseDiagnostics(t *testing.T) {
	out := "# fixture/server\n./main.go:14:2: undefined: greet\nmain.go:20: syntax error\n/abs/x.go:3:1: bad\nnote: module requires Go 1.99\n"
	got := parseDiagnostics(out, "/src/server")
	want := []Diagnostic{
		{File: "/src/server/main.go", Line: 14, Column: 2, Message: "undefined: greet"},
		{File: "/src/server/main.go", Line: 20, Message: "syntax error"},
		{File: "/abs/x.go", Line: 3, Column: 1, Message: "bad"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestResolveProgram(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "cmd", "app"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "cmd", "app", "main.go"), []byte("package main\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644))
	tests := []struct {
		program, wantDir, wantPkg, wantErr string
	}{
		{program: "./cmd/app", wantDir: filepath.Join(dir, "cmd", "app"), wantPkg: "."},
		{program: filepath.Join(dir, "cmd", "app", "main.go"), wantDir: filepath.Join(dir, "cmd", "app"), wantPkg: "main.go"},
		{program: "./cmd/nope", wantErr: "does not exist"},
		{program: "", wantErr: `no "program"`},
		{program: "README", wantErr: "not a .go file"},
	}
	for _, tt := range tests {
		got, err := resolveProgram(tt.program, dir)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolveProgram(%q) = %v, want error containing %q", tt.program, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.dir != tt.wantDir || got.pkg != tt.wantPkg {
			t.Errorf("resolveProgram(%q) = %+v, %v; want dir %s pkg %s", tt.program, got, err, tt.wantDir, tt.wantPkg)
		}
	}
}

// TestBuildDebug runs the real go command: a good build, a compile error with its
// position, and a library package, each against what the user would see.
func TestBuildDebug(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module m\n\ngo 1.26\n"), 0o644))
	write := func(rel, src string) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, rel), []byte(src), 0o644))
	}
	write("good/main.go", "package main\n\nfunc main() {}\n")
	write("bad/main.go", "package main\n\nfunc main() {\n\tx := 1\n}\n")
	write("lib/lib.go", "package lib\n\nfunc F() {}\n")
	tests := []struct {
		pkg      string
		wantErr  string
		wantDiag *Diagnostic
	}{
		{pkg: "good"},
		{pkg: "bad", wantErr: "declared and not used", wantDiag: &Diagnostic{File: filepath.Join(dir, "bad", "main.go"), Line: 4, Column: 2}},
		{pkg: "lib", wantErr: "not a main package"},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bin")
			_, err := buildDebug(context.Background(), target{dir: filepath.Join(dir, tt.pkg), pkg: ".", display: tt.pkg}, out, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(out); err != nil {
					t.Fatalf("no binary: %v", err)
				}
				return
			}
			var be *BuildError
			if !errors.As(err, &be) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want a BuildError containing %q", err, tt.wantErr)
			}
			if tt.wantDiag != nil {
				if len(be.Diagnostics) == 0 {
					t.Fatalf("no diagnostics parsed from %q", be.Output)
				}
				d := be.Diagnostics[0]
				if d.File != tt.wantDiag.File || d.Line != tt.wantDiag.Line || d.Column != tt.wantDiag.Column {
					t.Errorf("diagnostic %+v, want at %s:%d:%d", d, tt.wantDiag.File, tt.wantDiag.Line, tt.wantDiag.Column)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
