package agentimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MainModule is kloop's module path; Package the command the image runs.
const (
	MainModule = "github.com/kloop/kloop"
	Package    = MainModule + "/cmd/kloop"
	// versionVars are the -X targets the version is linked into: what
	// `kloop version` prints and the tag intercept.DefaultImage() uses.
	mainVersionVar      = "main.version"
	interceptVersionVar = MainModule + "/kube/intercept.Version"
)

// BuildOptions say what to cross-build.
type BuildOptions struct {
	// Source is the root of a kloop checkout (its go.mod declares
	// MainModule); FindSource finds one above a directory.
	Source string
	// ModuleVersion, when Source is empty, builds MainModule at this
	// version as the go command fetches it (GOPROXY, go.sum checks), the
	// way `go install github.com/kloop/kloop/cmd/kloop@VERSION` does: for a
	// kloop installed that way, with no checkout around.
	ModuleVersion string
	// Version is linked into the binary (main.version, intercept.Version).
	Version string
	// Dir receives the binaries, one per platform.
	Dir string
	// Go is the go command; "go" when empty.
	Go string
}

// BuildTag builds kloop with only its in-cluster face (kloop agent and
// kloop version): cmd/kloop's agentonly.go. The agent runs in every
// intercepted pod, and without the daemon, the CLI, client-go and Delve it
// starts with about a fifth of the full binary's resident memory.
const BuildTag = "agentonly"

// CrossBuild builds the kloop binary for plat from o.Source, static and
// reproducible: -trimpath, no VCS stamp, no cgo, the baseline instruction
// set (an image must run on any node of its platform, whatever GOAMD64 the
// user's environment sets), and none of the user's GOFLAGS. The Go build
// cache makes a second build of the same source cheap.
func CrossBuild(ctx context.Context, o BuildOptions, plat v1.Platform) (string, error) {
	if plat.OS != "linux" {
		return "", fmt.Errorf("platform %s: the agent runs in Linux pods; want linux/ARCH", plat)
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return "", fmt.Errorf("binary directory: %w", err)
	}
	out := filepath.Join(o.Dir, "kloop-"+plat.OS+"-"+plat.Architecture)
	ldflags := "-s -w -X " + mainVersionVar + "=" + o.Version + " -X " + interceptVersionVar + "=" + o.Version
	pkg, dir := "./cmd/kloop", o.Source
	if dir == "" {
		var err error
		if dir, err = moduleDir(ctx, goCmd, o); err != nil {
			return "", err
		}
		pkg = Package
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-tags=" + BuildTag, "-ldflags=" + ldflags, "-o", out, pkg}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+plat.OS, "GOARCH="+plat.Architecture, "CGO_ENABLED=0",
		"GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s for %s in %s: %w\n%s", strings.Join(args, " "), plat, dir, err, stderr.String())
	}
	return out, nil
}

// moduleDir is a module of its own under o.Dir that requires MainModule
// at o.ModuleVersion, made once: building a command of a required module
// is how `go install pkg@version` builds, with kloop's own go.mod
// choosing every dependency's version.
func moduleDir(ctx context.Context, goCmd string, o BuildOptions) (string, error) {
	if o.ModuleVersion == "" {
		return "", fmt.Errorf("no kloop source: set a checkout or a module version")
	}
	dir := filepath.Join(o.Dir, "module")
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module kloop.invalid/agentimage\n"), 0o600); err != nil {
		return "", err
	}
	args := []string{"get", Package + "@" + o.ModuleVersion}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fetch %s@%s: go %s: %w\n%s", MainModule, o.ModuleVersion, strings.Join(args, " "), err, stderr.String())
	}
	return dir, nil
}

// FindSource walks up from dir to a directory whose go.mod declares
// MainModule: a kloop checkout.
func FindSource(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			return d, checkModule(d, moduleLine(b))
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside a kloop source tree (no go.mod of %s above it)", dir, MainModule)
		}
	}
}

func checkModule(dir, module string) error {
	if module != MainModule {
		return fmt.Errorf("%s/go.mod is the module %q, not %s: run from a kloop checkout or pass --source", dir, module, MainModule)
	}
	return nil
}

// moduleLine is the module path a go.mod declares.
func moduleLine(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
