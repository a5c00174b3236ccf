package debugadapter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// debugGCFlags turns off optimisation and inlining so every variable and line is
// visible to Delve.
const debugGCFlags = "-gcflags=all=-N -l"

// debugLDFlags leaves DWARF uncompressed: the linker skips zlib and Delve skips
// inflating it on every (re)launch, which is most of the cost on the relaunch path.
// A user's own -ldflags in buildFlags comes later on the command line and wins.
const debugLDFlags = "-ldflags=-compressdwarf=false"

// Diagnostic is one compiler message with its position, for the editor's problems list.
type Diagnostic struct {
	File    string // absolute path
	Line    int
	Column  int // 0 when the compiler gave none
	Message string
}

func (d Diagnostic) String() string {
	if d.Column > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Column, d.Message)
	}
	return fmt.Sprintf("%s:%d: %s", d.File, d.Line, d.Message)
}

// BuildError is a failed build: the compiler's output and what could be parsed from it.
type BuildError struct {
	Package     string
	Output      string
	Diagnostics []Diagnostic
	Err         error
}

func (e *BuildError) Error() string {
	if len(e.Diagnostics) > 0 {
		return fmt.Sprintf("build %s: %s", e.Package, e.Diagnostics[0])
	}
	out := strings.TrimSpace(e.Output)
	if out == "" && e.Err != nil {
		out = e.Err.Error()
	}
	return fmt.Sprintf("build %s: %s", e.Package, out)
}

func (e *BuildError) Unwrap() error { return e.Err }

// target says what to build and from where.
type target struct {
	dir     string // directory go build runs in (the package's directory)
	pkg     string // argument to go build: "." or a file name
	display string // what the user named, for messages
}

// resolveProgram turns the launch config's program into a build target and checks that it
// exists, so a typo gets a message about the path rather than a compiler error.
func resolveProgram(program, baseDir string) (target, error) {
	if strings.TrimSpace(program) == "" {
		return target{}, errors.New(`launch configuration has no "program": set it to the main package directory, e.g. "./cmd/server"`)
	}
	path := program
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	info, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return target{}, fmt.Errorf("program %q does not exist (looked at %s): point \"program\" at a main package directory or .go file", program, path)
		}
		return target{}, fmt.Errorf("program %q: %w", program, err)
	}
	if info.IsDir() {
		return target{dir: path, pkg: ".", display: program}, nil
	}
	if filepath.Ext(path) != ".go" {
		return target{}, fmt.Errorf("program %q is a file but not a .go file: point \"program\" at a main package directory", program)
	}
	return target{dir: filepath.Dir(path), pkg: filepath.Base(path), display: program}, nil
}

// buildDebug compiles the target with debug flags into output. The result is written
// to output only when the build succeeds, so a failed build never disturbs a running
// binary at another path.
func buildDebug(ctx context.Context, t target, output string, extraFlags []string) (time.Duration, error) {
	start := time.Now()
	args := []string{"build", debugGCFlags, debugLDFlags, "-o", output}
	args = append(args, extraFlags...)
	args = append(args, t.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = t.dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return elapsed, fmt.Errorf("build %s: %w", t.display, ctx.Err())
		}
		return elapsed, &BuildError{
			Package:     t.display,
			Output:      out.String(),
			Diagnostics: parseDiagnostics(out.String(), t.dir),
			Err:         err,
		}
	}
	if err := checkExecutable(output); err != nil {
		return elapsed, &BuildError{Package: t.display, Output: err.Error(), Err: err}
	}
	return elapsed, nil
}

// checkExecutable rejects what `go build -o` writes for a non-main package: an archive.
func checkExecutable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open build output: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.Read(magic); err != nil {
		return fmt.Errorf("read build output: %w", err)
	}
	if !bytes.Equal(magic, []byte("\x7fELF")) {
		return errors.New(`not a main package: "program" must name a package with "package main" and func main()`)
	}
	return nil
}

var diagnosticLine = regexp.MustCompile(`^(.+?\.go):(\d+)(?::(\d+))?: (.*)$`)

// parseDiagnostics extracts file:line[:col]: message lines from go build output; paths
// are made absolute against the directory the build ran in.
func parseDiagnostics(output, dir string) []Diagnostic {
	var diags []Diagnostic
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		m := diagnosticLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		file := m[1]
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		line, _ := strconv.Atoi(m[2])
		col, _ := strconv.Atoi(m[3])
		diags = append(diags, Diagnostic{File: file, Line: line, Column: col, Message: m[4]})
	}
	return diags
}
