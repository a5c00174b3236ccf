package standin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Image says which local program stands in for a container image.
type Image struct {
	// Package is a Go package to build, as an import path
	// ("github.com/kloop/kloop/cmd/kloop"); it is built once per test binary
	// from the module the tests run in.
	Package string
	// Tags are build tags for Package (the agent image's "agentonly").
	Tags []string
	// Binary is a program to run as it is; it wins over Package.
	Binary string
	// Ports the program listens on that pod specs may not declare (an
	// agent's control port). Port-forward, Wait and Dial cover the declared
	// container ports and these; a real kubelet forwards any port, kwok
	// only the ones listed in its PortForward.
	Ports []int32
}

// Images maps image references to stand-ins. A reference matches with or
// without its tag or digest; "ko://IMPORTPATH" references (the samples')
// need no entry: they build IMPORTPATH.
type Images map[string]Image

// AgentImage is the repository of kloop's traffic agent image, which
// kube/intercept injects as a sidecar (any tag); its entrypoint is the
// kloop binary, so the pod's args start with "agent".
const AgentImage = "ghcr.io/kloop/agent"

// DefaultImages is a fresh table for the samples in test/testdata (their
// manifests use ko:// references, which need no entry) and the kloop agent
// (AgentImage, built from the kloop command in the module the tests run
// in). Add entries for other images.
func DefaultImages() Images {
	return Images{AgentImage: {Package: "github.com/kloop/kloop/cmd/kloop", Tags: []string{"agentonly"}}}
}

// lookup finds the stand-in of image.
func (im Images) lookup(image string) (Image, bool) {
	if i, ok := im[image]; ok {
		return i, true
	}
	bare := image
	if at := strings.IndexByte(bare, '@'); at >= 0 {
		bare = bare[:at]
	}
	if colon := strings.LastIndexByte(bare, ':'); colon > strings.LastIndexByte(bare, '/') {
		bare = bare[:colon]
	}
	if i, ok := im[bare]; ok {
		return i, true
	}
	if pkg, ok := strings.CutPrefix(image, "ko://"); ok {
		return Image{Package: pkg}, true
	}
	return Image{}, false
}

// builder builds stand-in binaries once per package per test binary.
type builder struct {
	dir string
	// race builds with -race (Options.Race).
	race bool
	mu   sync.Mutex
	// built maps a package to its binary or its build error.
	built map[string]buildResult
}

type buildResult struct {
	path string
	err  error
}

func (b *builder) binary(ctx context.Context, img Image) (string, error) {
	if img.Binary != "" {
		if _, err := os.Stat(img.Binary); err != nil {
			return "", fmt.Errorf("stand-in binary: %w", err)
		}
		return img.Binary, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	key := img.Package
	if len(img.Tags) > 0 {
		key += "-" + strings.Join(img.Tags, "-")
	}
	if r, ok := b.built[key]; ok {
		return r.path, r.err
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return "", fmt.Errorf("stand-in binary dir: %w", err)
	}
	out := filepath.Join(b.dir, strings.NewReplacer("/", "_", ".", "_", ",", "_").Replace(key))
	args := []string{"build"}
	if len(img.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(img.Tags, ","))
	}
	if b.race {
		// Its own name: runners of one run sharing dir may differ in Race.
		out += "-race"
		args = append(args, "-race")
	}
	if b.built == nil {
		b.built = map[string]buildResult{}
	}
	// Another runner of this run built it already.
	if _, err := os.Stat(out); err == nil {
		b.built[key] = buildResult{path: out}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// Built aside and renamed, so a concurrent runner never runs half a file.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	args = append(args, "-o", tmp, img.Package)
	cmd := exec.CommandContext(ctx, "go", args...)
	output, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output)
	} else if err = os.Rename(tmp, out); err != nil {
		err = fmt.Errorf("install stand-in binary: %w", err)
	}
	b.built[key] = buildResult{path: out, err: err}
	return out, err
}
