package build

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseGoOutput(t *testing.T) {
	dir := "/src/app"
	tests := []struct {
		name   string
		output string
		want   []Diagnostic
	}{
		{
			name:   "relative with column",
			output: "# example.com/app\n./main.go:7:14: undefined: thing\n",
			want:   []Diagnostic{{File: "/src/app/main.go", Line: 7, Column: 14, Message: "undefined: thing"}},
		},
		{
			name:   "subdirectory and absolute paths",
			output: "# example.com/app/cmd/x\ncmd/x/main.go:3:1: syntax error: unexpected EOF, expected }\n/mod/dep/dep.go:10:2: declared and not used: y\n",
			want: []Diagnostic{
				{File: "/src/app/cmd/x/main.go", Line: 3, Column: 1, Message: "syntax error: unexpected EOF, expected }"},
				{File: "/mod/dep/dep.go", Line: 10, Column: 2, Message: "declared and not used: y"},
			},
		},
		{
			name:   "no column",
			output: "./a.go:12: some linker complaint\n",
			want:   []Diagnostic{{File: "/src/app/a.go", Line: 12, Message: "some linker complaint"}},
		},
		{
			name:   "continuation lines join the message",
			output: "./a.go:5:9: cannot use x (variable of type int) as string value\n\thave int\n\twant string\n./a.go:6:1: too many errors\n",
			want: []Diagnostic{
				{File: "/src/app/a.go", Line: 5, Column: 9, Message: "cannot use x (variable of type int) as string value\nhave int\nwant string"},
				{File: "/src/app/a.go", Line: 6, Column: 1, Message: "too many errors"},
			},
		},
		{
			name:   "parent directory is cleaned",
			output: "../lib/lib.go:2:3: bad\n",
			want:   []Diagnostic{{File: "/src/lib/lib.go", Line: 2, Column: 3, Message: "bad"}},
		},
		{
			name:   "no positions",
			output: "no required module provides package example.com/x; to add it:\n\tgo get example.com/x\n",
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseGoOutput(dir, tt.output)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseGoOutput:\n got  %#v\n want %#v", got, tt.want)
			}
		})
	}
}

// copyFixture copies testdata/<name> into a fresh directory so a test may
// edit it.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", name, err)
	}
	return dst
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runBinary(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("run %s: %v\n%s", bin, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestGoBuildFailureKeepsBinaryAndReportsPositions(t *testing.T) {
	ctx := context.Background()
	src := copyFixture(t, "hello")
	out := filepath.Join(t.TempDir(), "bin", "hello")
	b := &GoBuild{Dir: src, Package: ".", Output: out}

	res, err := b.Build(ctx)
	if err != nil {
		t.Fatalf("first build: %v", err)
	}
	if res.Binary != out || res.Duration <= 0 {
		t.Errorf("result = %+v, want binary %s and a duration", res, out)
	}
	if got := runBinary(t, out); got != "hello v1" {
		t.Fatalf("binary printed %q, want hello v1", got)
	}
	goID, err := exec.Command("go", "tool", "buildid", out).Output()
	if err != nil || res.ID == "" || res.ID != strings.TrimSpace(string(goID)) {
		t.Errorf("build ID = %q, go tool buildid says %q (%v)", res.ID, goID, err)
	}
	if again, err := b.Build(ctx); err != nil || again.ID != res.ID {
		t.Errorf("rebuild of the same code: ID %q, %v; want %q", again.ID, err, res.ID)
	}
	before, _ := os.ReadFile(out)

	writeFile(t, filepath.Join(src, "main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tvar s string = 1\n\tfmt.Println(missing, s)\n}\n")
	_, err = b.Build(ctx)
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("bad build error = %v (%T), want *build.Error", err, err)
	}
	mainGo := filepath.Join(src, "main.go")
	want := []Diagnostic{
		{File: mainGo, Line: 6, Column: 17, Message: "cannot use 1 (untyped int constant) as string value in variable declaration"},
		{File: mainGo, Line: 7, Column: 14, Message: "undefined: missing"},
	}
	if !reflect.DeepEqual(be.Diagnostics, want) {
		t.Errorf("diagnostics:\n got  %v\n want %v", be.Diagnostics, want)
	}
	if got := be.ByFile(); len(got) != 1 || len(got[mainGo]) != 2 {
		t.Errorf("ByFile = %v, want both diagnostics under %s", got, mainGo)
	}
	after, _ := os.ReadFile(out)
	if !bytes.Equal(before, after) {
		t.Error("a failed build changed the existing binary")
	}
	if got := runBinary(t, out); got != "hello v1" {
		t.Errorf("old binary now prints %q, want hello v1", got)
	}
	assertNoStaging(t, filepath.Dir(out))

	writeFile(t, mainGo, "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello v2\")\n}\n")
	if _, err := b.Build(ctx); err != nil {
		t.Fatalf("fixed build: %v", err)
	}
	if got := runBinary(t, out); got != "hello v2" {
		t.Errorf("binary after fix prints %q, want hello v2", got)
	}
	if id, _ := GoBuildID(out); id == res.ID {
		t.Error("changed code kept the same build ID")
	}
	assertNoStaging(t, filepath.Dir(out))
}

func assertNoStaging(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".staging-") {
			t.Errorf("staging file %s left behind", e.Name())
		}
	}
}

func TestGoBuildRefusesBadPackages(t *testing.T) {
	src := copyFixture(t, "hello")
	tests := []struct {
		pkg  string
		want error
		says string
	}{
		{pkg: "./lib", want: ErrNotMain, says: "library package"},
		{pkg: "./nope", want: ErrNoPackage, says: "./nope"},
		{pkg: "example.com/elsewhere/x", want: ErrNoPackage, says: "example.com/elsewhere/x"},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bin")
			_, err := (&GoBuild{Dir: src, Package: tt.pkg, Output: out}).Build(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not mention %q", err, tt.says)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Errorf("output %s exists after a refused build", out)
			}
		})
	}
}

func TestGoBuildDebugFlags(t *testing.T) {
	src := copyFixture(t, "hello")
	out := filepath.Join(t.TempDir(), "hello")
	if _, err := (&GoBuild{Dir: src, Package: ".", Output: out, Debug: true, Flags: []string{"-tags=dev"}}).Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command("go", "version", "-m", out).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	for _, want := range []string{"-gcflags=\"all=-N -l\"", "-tags=dev"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("build info lacks %s:\n%s", want, info)
		}
	}
}

func TestCommandBuild(t *testing.T) {
	dir := t.TempDir()
	ok := &Command{Dir: dir, Argv: []string{"sh", "-c", "echo built > artifact; echo compiling"}}
	res, err := ok.Build(context.Background())
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if strings.TrimSpace(res.Output) != "compiling" {
		t.Errorf("output = %q", res.Output)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "artifact")); string(b) != "built\n" {
		t.Errorf("command did not run in its directory: artifact = %q", b)
	}

	bad := &Command{Dir: dir, Argv: []string{"sh", "-c", "echo 'Main.kt:3: expecting }' >&2; exit 3"}}
	_, err = bad.Build(context.Background())
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("error = %v, want *build.Error", err)
	}
	if !strings.Contains(be.Error(), "Main.kt:3: expecting }") || !strings.Contains(be.Error(), "exit status 3") {
		t.Errorf("error text %q lacks the command's output or status", be.Error())
	}

	if _, err := (&Command{Dir: dir}).Build(context.Background()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty command: error = %v", err)
	}
}

func TestGoBuildCancelled(t *testing.T) {
	src := copyFixture(t, "hello")
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	out := filepath.Join(t.TempDir(), "hello")
	_, err := (&GoBuild{Dir: src, Package: ".", Output: out}).Build(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want deadline exceeded", err)
	}
}
