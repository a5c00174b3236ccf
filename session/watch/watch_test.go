package watch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, rel string
		want         bool
	}{
		{"*.go", "main.go", true},
		{"*.go", "internal/x/y.go", true},
		{"*.go", "main.go~", false},
		{"go.mod", "sub/go.mod", true},
		{"src/**/*.py", "src/app.py", true},
		{"src/**/*.py", "src/a/b/app.py", true},
		{"src/**/*.py", "docs/app.py", false},
		{"**/*.kt", "a/b/C.kt", true},
		{"build.gradle.kts", "build.gradle.kts", true},
		{"src/*.py", "src/a/app.py", false},
		{"src/**", "src/a/b", true},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.rel); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.rel, got, tt.want)
		}
	}
}

// batches records what the watcher reported.
type batches struct {
	mu  sync.Mutex
	got [][]string
}

func (b *batches) add(paths []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, paths)
}

func (b *batches) all() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// next waits for batch number i (0-based).
func (b *batches) next(t *testing.T, i int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if all := b.all(); len(all) > i {
			return all[i]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trigger number %d; got %v", i+1, b.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func goTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"go.mod", "main.go", "sub/x.go", ".git/HEAD", "vendor/dep/dep.go", "node_modules/m/i.js", "bin/x"} {
		write(t, filepath.Join(root, f), "x")
	}
	return root
}

func start(t *testing.T, cfg Config) (*Watcher, *batches) {
	t.Helper()
	var b batches
	w, err := Start(context.Background(), cfg, b.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, &b
}

func TestIgnoresWhatDoesNotChangeTheBuild(t *testing.T) {
	root := goTree(t)
	_, b := start(t, Config{Root: root, IgnoreDirs: []string{filepath.Join(root, "bin")}, Debounce: 50 * time.Millisecond})

	for _, f := range []string{".git/HEAD", ".git/index", "vendor/dep/dep.go", "node_modules/m/x.go", "bin/staging.go",
		"main.go~", ".#main.go", "#main.go#", ".main.go.swp", "4913", "main.go.tmp", "main.go___jb_tmp___", "README.md"} {
		write(t, filepath.Join(root, f), "changed")
	}
	// A wanted change after the ignored ones: if any ignored file counted,
	// it shows up in this batch or in one before it.
	sentinel := filepath.Join(root, "sub", "x.go")
	write(t, sentinel, "package sub")
	if got := b.next(t, 0); !slices.Equal(got, []string{sentinel}) {
		t.Errorf("first trigger = %v, want only %s", got, sentinel)
	}
}

func TestNewDirectoriesAreWatched(t *testing.T) {
	root := goTree(t)
	_, b := start(t, Config{Root: root, Debounce: 50 * time.Millisecond})

	// Created together, as git checkout does: the file may land before the
	// directory's watch exists.
	nested := filepath.Join(root, "internal", "store", "store.go")
	write(t, nested, "package store")
	if got := b.next(t, 0); !slices.Contains(got, nested) {
		t.Fatalf("trigger = %v, want %s", got, nested)
	}
	write(t, nested, "package store // edited")
	if got := b.next(t, 1); !slices.Equal(got, []string{nested}) {
		t.Errorf("second trigger = %v, want %s", got, nested)
	}
	if err := os.Remove(nested); err != nil {
		t.Fatal(err)
	}
	if got := b.next(t, 2); !slices.Equal(got, []string{nested}) {
		t.Errorf("deletion trigger = %v, want %s", got, nested)
	}
}

func TestSaveStormCoalesces(t *testing.T) {
	root := goTree(t)
	const maxDelay = 500 * time.Millisecond
	w, b := start(t, Config{Root: root, Debounce: 100 * time.Millisecond, MaxDelay: maxDelay})

	files := []string{filepath.Join(root, "main.go"), filepath.Join(root, "sub", "x.go")}
	began := time.Now()
	for i := range 100 {
		f := files[i%2]
		write(t, f, strings.Repeat("x", i))
		w.Notify(f) // the editor's didSave of the same save
		time.Sleep(10 * time.Millisecond)
	}
	storm := time.Since(began)
	// Wait for the trailing trigger, then allow one more quiet period.
	b.next(t, 0)
	waitQuiet(t, b, 300*time.Millisecond)
	got := b.all()
	// The first save fires fast; the rest of the storm waits for quiet, or
	// for MaxDelay while it lasts.
	limit := int(storm/maxDelay) + 3
	if len(got) > limit {
		t.Errorf("%d saves over %v made %d triggers, want at most %d", 100, storm, len(got), limit)
	}
	seen := map[string]bool{}
	for _, batch := range got {
		for _, p := range batch {
			seen[p] = true
		}
	}
	for _, f := range files {
		if !seen[f] {
			t.Errorf("changed file %s never reported", f)
		}
	}
	t.Logf("100 saves in %v -> %d triggers", storm, len(got))
}

// waitQuiet returns once no new trigger arrived for d.
func waitQuiet(t *testing.T, b *batches, d time.Duration) {
	t.Helper()
	n := len(b.all())
	for {
		time.Sleep(d)
		m := len(b.all())
		if m == n {
			return
		}
		n = m
	}
}

func TestNotifyAndFileEventCountOnce(t *testing.T) {
	root := goTree(t)
	w, b := start(t, Config{Root: root, Debounce: 50 * time.Millisecond})
	main := filepath.Join(root, "main.go")
	w.Notify(filepath.Join(root, "..", "elsewhere.go")) // outside the tree
	w.Notify(filepath.Join(root, "notes.txt"))          // not a Go file
	write(t, main, "package main")
	w.Notify(main)
	if got := b.next(t, 0); !slices.Equal(got, []string{main}) {
		t.Errorf("trigger = %v, want just %s", got, main)
	}
}

func TestPatternsForOtherLanguages(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "src", "app", "x.py"), "")
	write(t, filepath.Join(root, "docs", "x.py"), "")
	_, b := start(t, Config{Root: root, Patterns: []string{"src/**/*.py", "requirements.txt"}, Debounce: 50 * time.Millisecond})

	write(t, filepath.Join(root, "docs", "x.py"), "print(1)")
	write(t, filepath.Join(root, "main.go"), "package main")
	req := filepath.Join(root, "requirements.txt")
	app := filepath.Join(root, "src", "app", "x.py")
	write(t, req, "flask")
	write(t, app, "print(2)")
	if got := b.next(t, 0); !slices.Equal(got, []string{req, app}) {
		t.Errorf("trigger = %v, want %s and %s only", got, req, app)
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	write(t, file, "")
	if _, err := Start(context.Background(), Config{Root: file}, nil); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as root: %v", err)
	}
	if _, err := Start(context.Background(), Config{Root: t.TempDir(), Patterns: []string{"[*.go"}}, nil); err == nil || !strings.Contains(err.Error(), "[*.go") {
		t.Errorf("bad pattern: %v", err)
	}
}

func TestEditorSaveFiresFast(t *testing.T) {
	root := goTree(t)
	// A debounce far longer than the test may wait shows which path fired.
	w, b := start(t, Config{Root: root, Debounce: time.Hour, MaxDelay: time.Hour, SaveDebounce: 20 * time.Millisecond})
	main := filepath.Join(root, "main.go")
	write(t, main, "package main // saved")
	w.Notify(main)
	if got := b.next(t, 0); !slices.Equal(got, []string{main}) {
		t.Errorf("trigger = %v, want %s", got, main)
	}
}

func TestDirectoryMovedAwayTriggers(t *testing.T) {
	root := goTree(t)
	_, b := start(t, Config{Root: root, Debounce: 50 * time.Millisecond})
	sub := filepath.Join(root, "sub")
	away := filepath.Join(t.TempDir(), "sub")
	if err := os.Rename(sub, away); err != nil {
		t.Fatal(err)
	}
	if got := b.next(t, 0); !slices.Equal(got, []string{sub}) {
		t.Fatalf("trigger = %v, want the moved directory %s", got, sub)
	}
	// Its files are outside the tree now: editing them changes nothing.
	write(t, filepath.Join(away, "x.go"), "package sub // elsewhere")
	main := filepath.Join(root, "main.go")
	write(t, main, "package main")
	if got := b.next(t, 1); !slices.Equal(got, []string{main}) {
		t.Errorf("second trigger = %v, want only %s", got, main)
	}
}
