// Package build turns a program's source into a runnable binary for the
// relaunch loop: `go build` of a Go main package (with its compile errors
// parsed into per-file diagnostics for the editor), or an arbitrary build
// command for programs that are not Go. A failed build never touches the
// binary that is currently running.
package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DebugGCFlags disables optimisations and inlining so that Delve can stop on
// every line and show every variable.
const DebugGCFlags = "-gcflags=all=-N -l"

// Builder builds a program. Both GoBuild and Command implement it.
type Builder interface {
	Build(ctx context.Context) (*Result, error)
}

// Result describes a successful build.
type Result struct {
	// Binary is the path of the built executable; empty for a Command build
	// that names no output.
	Binary string
	// Duration is the wall time of the build, including the swap into place.
	Duration time.Duration
	// Output is what the build printed (warnings, for instance).
	Output string
	// ID is the Go build ID of Binary: equal IDs mean the same program, so
	// a save that changed nothing need not relaunch. Empty when unknown.
	ID string
}

// Diagnostic is one compile error at a source position. File is absolute;
// Line and Column count from 1 (Column is 0 when the compiler gave none).
type Diagnostic struct {
	File    string
	Line    int
	Column  int
	Message string
}

func (d Diagnostic) String() string {
	if d.Column > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Column, d.Message)
	}
	return fmt.Sprintf("%s:%d: %s", d.File, d.Line, d.Message)
}

// Error is a failed build. Diagnostics holds what could be tied to a source
// position; Output is the full text the build printed, for everything else.
type Error struct {
	// What names the build that failed, such as "go build ./cmd/orders".
	What        string
	Output      string
	Diagnostics []Diagnostic
	Duration    time.Duration
	// Err is the underlying cause (exit status, missing package, ...).
	Err error
}

func (e *Error) Error() string {
	out := strings.TrimSpace(e.Output)
	if out == "" {
		return fmt.Sprintf("%s: %v", e.What, e.Err)
	}
	return fmt.Sprintf("%s: %v\n%s", e.What, e.Err, out)
}

func (e *Error) Unwrap() error { return e.Err }

// ByFile groups the diagnostics per file, in the order the compiler gave
// them, so that an editor can publish one list per document.
func (e *Error) ByFile() map[string][]Diagnostic {
	return GroupByFile(e.Diagnostics)
}

// GroupByFile groups diagnostics per file, keeping their order.
func GroupByFile(diags []Diagnostic) map[string][]Diagnostic {
	out := map[string][]Diagnostic{}
	for _, d := range diags {
		out[d.File] = append(out[d.File], d)
	}
	return out
}

// ErrNotMain is wrapped by the error for a package that is not package main.
var ErrNotMain = errors.New("not a main package")

// ErrNoPackage is wrapped by the error for a package that cannot be found.
var ErrNoPackage = errors.New("package not found")

// GoBuild builds a Go main package with the go command.
type GoBuild struct {
	// Dir is where go runs: the directory of .kloop.yaml or the module root.
	// Relative positions in compiler output are resolved against it.
	Dir string
	// Package is the main package, such as "./cmd/orders" or ".".
	Package string
	// Output is the final binary path. It is replaced atomically (rename)
	// only after a good build.
	Output string
	// Flags are extra `go build` flags, such as "-tags=dev".
	Flags []string
	// Debug adds DebugGCFlags so the binary can be debugged line by line.
	Debug bool
	// Env is the go command's environment; nil inherits the daemon's. The
	// default build cache is used either way, which keeps rebuilds fast.
	Env []string
	// GoCommand is the go binary; "" means "go" from PATH.
	GoCommand string
}

// Args returns the go command line (without the go binary) that builds into
// the given output path.
func (g *GoBuild) Args(output string) []string {
	args := []string{"build", "-o", output}
	if g.Debug {
		args = append(args, DebugGCFlags)
	}
	args = append(args, g.Flags...)
	return append(args, g.Package)
}

// Build compiles the package into a staging file beside Output and renames
// it over Output on success. On failure it returns *Error and leaves Output
// as it was.
func (g *GoBuild) Build(ctx context.Context) (*Result, error) {
	start := time.Now()
	what := "go build " + g.Package
	if g.Output == "" {
		return nil, fmt.Errorf("%s: no output path given for the binary", what)
	}
	if g.Package == "" {
		return nil, fmt.Errorf("go build: no package given; name the main package to build, such as ./cmd/orders")
	}
	dir, err := filepath.Abs(g.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: resolve build directory %q: %w", what, g.Dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(g.Output), 0o700); err != nil {
		return nil, fmt.Errorf("%s: create output directory: %w", what, err)
	}
	staging, err := stagingPath(g.Output)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(staging) // nothing left behind when the rename did not happen

	goCmd := g.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, g.Args(staging)...)
	cmd.Dir = dir
	cmd.Env = g.Env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	runErr := cmd.Run()
	output := out.String()
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) {
			return nil, fmt.Errorf("%s: run %s: %w", what, goCmd, runErr)
		}
		e := &Error{What: what, Output: output, Diagnostics: ParseGoOutput(dir, output), Duration: time.Since(start), Err: runErr}
		if len(e.Diagnostics) == 0 && strings.Contains(output, "no Go files in") {
			e.Err = fmt.Errorf("%w: %s has no Go files (deleted or moved?); restore them or point the program at another main package (%v)", ErrNoPackage, g.Package, runErr)
		} else if len(e.Diagnostics) == 0 && isMissingPackage(output) {
			e.Err = fmt.Errorf("%w: %s does not name a package in %s; give the directory of a main package, such as ./cmd/orders (%v)", ErrNoPackage, g.Package, dir, runErr)
		}
		return nil, e
	}
	// go build -o of a library package writes an archive, not an error.
	if isArchive(staging) {
		return nil, &Error{What: what, Output: output, Duration: time.Since(start),
			Err: fmt.Errorf("%w: %s is a library package; give the directory that holds 'package main' and 'func main()'", ErrNotMain, g.Package)}
	}
	if err := os.Rename(staging, g.Output); err != nil {
		return nil, fmt.Errorf("%s: move the new binary into place: %w", what, err)
	}
	id, _ := GoBuildID(g.Output)
	return &Result{Binary: g.Output, Duration: time.Since(start), Output: output, ID: id}, nil
}

// Command builds a program that is not Go with an external command.
type Command struct {
	// Argv is the command and its arguments; it is not run through a shell.
	Argv []string
	// Dir is the working directory.
	Dir string
	// Env is the command's environment; nil inherits the daemon's.
	Env []string
}

// Build runs the command. Its output becomes the error text when it fails.
func (c *Command) Build(ctx context.Context) (*Result, error) {
	start := time.Now()
	if len(c.Argv) == 0 {
		return nil, errors.New("build command: empty; give the command and its arguments, such as [\"./gradlew\", \"installDist\"]")
	}
	what := "build command " + strings.Join(c.Argv, " ")
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return nil, &Error{What: what, Output: out.String(), Duration: time.Since(start), Err: err}
	}
	return &Result{Duration: time.Since(start), Output: out.String()}, nil
}

func stagingPath(final string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name staging file: %w", err)
	}
	// Same directory as the final binary, so the rename is atomic.
	return final + ".staging-" + hex.EncodeToString(b[:]), nil
}

func isArchive(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [8]byte
	n, _ := f.Read(magic[:])
	return string(magic[:n]) == "!<arch>\n"
}

func isMissingPackage(output string) bool {
	for _, s := range []string{"directory not found", "no required module provides package", "is not in std", "cannot find package", "matched no packages", "malformed import path", "not in a module"} {
		if strings.Contains(output, s) {
			return true
		}
	}
	return false
}

// GoBuildID reads the build ID the go command stamps into an ELF binary
// (the .note.go.buildid note). The linker derives it from the binary's
// inputs and content, so two builds of the same code share it.
func GoBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("read build ID of %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return "", fmt.Errorf("read build ID of %s: no Go build ID note", path)
	}
	data, err := sec.Data()
	if err != nil {
		return "", fmt.Errorf("read build ID of %s: %w", path, err)
	}
	// ELF note: namesz, descsz, type (4 bytes each), name "Go\x00\x00", desc.
	if len(data) < 16 || string(data[12:16]) != "Go\x00\x00" {
		return "", fmt.Errorf("read build ID of %s: malformed note", path)
	}
	descsz := int(binary.LittleEndian.Uint32(data[4:8]))
	if 16+descsz > len(data) {
		return "", fmt.Errorf("read build ID of %s: malformed note", path)
	}
	return string(data[16 : 16+descsz]), nil
}
