package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/ko/pkg/build"
)

const (
	// DefaultPlatform is the platform the agent image is built for.
	DefaultPlatform = "linux/amd64"
	// DefaultUser is distroless's "nonroot" user.
	DefaultUser = "65532"
	// AgentPackage is the command the image runs.
	AgentPackage = MainModule + "/cmd/kloop"
	// AppPath is where ko puts the binary: /ko-app/<last element of the import path>.
	AppPath = "/ko-app/kloop"
	// BaseName names the in-process empty base in the image's
	// org.opencontainers.image.base.name annotation. The .invalid TLD says
	// it is not pullable; there is nothing to pull.
	BaseName = "kloop.invalid/scratch:empty"
)

// Options say what to build.
type Options struct {
	Dir      string // repository root
	Image    string // reference; empty: intercept.DefaultImage() for Version
	Out      string // tarball path
	Version  string // linked into main.version and intercept.Version; "" leaves both alone
	Platform string // os/arch
	User     string
}

// Result describes the written tarball.
type Result struct {
	Path       string
	Ref        name.Tag
	Digest     v1.Hash // manifest digest
	FileSize   int64
	LayerBytes int64 // compressed layers, what a registry would store
}

// Build builds the agent image with ko and writes Options.Out.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Platform == "" {
		o.Platform = DefaultPlatform
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	plat, err := v1.ParsePlatform(o.Platform)
	if err != nil {
		return nil, err
	}
	if o.Image == "" {
		d, err := ReadInterceptDefaults(o.Dir)
		if err != nil {
			return nil, err
		}
		o.Image = d.Image(o.Version)
	}
	// A docker archive needs a tag; a digest is only known after the build.
	ref, err := name.NewTag(o.Image)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w (a repository[:tag], no digest)", o.Image, err)
	}

	base, err := ScratchBase(*plat)
	if err != nil {
		return nil, err
	}
	baseRef, err := name.ParseReference(BaseName)
	if err != nil {
		return nil, err
	}

	ldflags := []string{"-s", "-w"}
	if o.Version != "" {
		ldflags = append(ldflags, "-X", "main.version="+o.Version, "-X", InterceptVersionVar+"="+o.Version)
	}
	version := o.Version
	if version == "" {
		version = "devel"
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "kloop-agent",
		"org.opencontainers.image.description": "kloop traffic agent (kloop agent), injected as the kloop-agent sidecar",
		"org.opencontainers.image.source":      "https://" + MainModule,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.licenses":    "MIT",
	}
	if rev := gitRevision(ctx, o.Dir); rev != "" {
		labels["org.opencontainers.image.revision"] = rev
	}

	created, err := creationTime()
	if err != nil {
		return nil, err
	}
	opts := []build.Option{
		build.WithBaseImages(func(context.Context, string) (name.Reference, build.Result, error) {
			return baseRef, base, nil
		}),
		build.WithPlatforms(plat.String()),
		build.WithTrimpath(true),
		build.WithDisabledSBOM(),
		build.WithUser(o.User),
		build.WithCreationTime(created),
		build.WithKoDataCreationTime(created),
		build.WithConfig(map[string]build.Config{AgentPackage: {
			ID:      "kloop-agent",
			Ldflags: ldflags,
			// Only the in-cluster face (cmd/kloop's agentonly.go): a
			// fifth of the full binary's resident memory in every pod.
			Flags: []string{"-tags=agentonly"},
			// Static: the image has no libc. ko defaults to this too, but
			// an inherited CGO_ENABLED=1 would otherwise win.
			Env: []string{"CGO_ENABLED=0"},
		}}),
	}
	for k, v := range labels {
		opts = append(opts, build.WithLabel(k, v))
	}
	b, err := build.NewGo(ctx, o.Dir, opts...)
	if err != nil {
		return nil, err
	}
	imp := build.StrictScheme + AgentPackage
	if err := b.IsSupportedReference(imp); err != nil {
		return nil, fmt.Errorf("%s: %w", AgentPackage, err)
	}
	br, err := b.Build(ctx, imp)
	if err != nil {
		return nil, err
	}
	img, ok := br.(v1.Image)
	if !ok {
		return nil, fmt.Errorf("ko built a %T, want a single image", br)
	}
	if img, err = agentConfig(img); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return nil, err
	}
	if err := WriteArchive(o.Out, ref, img); err != nil {
		return nil, err
	}
	res := &Result{Path: o.Out, Ref: ref}
	if res.Digest, err = img.Digest(); err != nil {
		return nil, err
	}
	st, err := os.Stat(o.Out)
	if err != nil {
		return nil, err
	}
	res.FileSize = st.Size()
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		res.LayerBytes += l.Size
	}
	return res, nil
}

// ScratchBase is an empty OCI image for plat: no layers, only a config
// that says the platform. ko adds the binary on top.
func ScratchBase(plat v1.Platform) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = plat.OS
	cf.Architecture = plat.Architecture
	cf.Variant = plat.Variant
	cf.RootFS.Type = "layers"
	return mutate.ConfigFile(img, cf)
}

// agentConfig makes the image start the agent. ko sets the entrypoint to the
// binary and clears Cmd; the default command becomes `agent`. The entrypoint
// stays the bare binary because kube/intercept injects the sidecar with
// Args ["agent", "--forward", ...], which replace Cmd, not the entrypoint.
func agentConfig(img v1.Image) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := cf.Config
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != AppPath {
		return nil, fmt.Errorf("ko set entrypoint %q, want [%s]", c.Entrypoint, AppPath)
	}
	c.Cmd = []string{"agent"}
	return mutate.Config(img, c)
}

// creationTime is $SOURCE_DATE_EPOCH, else the Unix epoch, as ko does, so
// that the same source builds the same image.
func creationTime() (v1.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return v1.Time{Time: time.Unix(0, 0).UTC()}, nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return v1.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return v1.Time{Time: time.Unix(sec, 0).UTC()}, nil
}

// gitRevision is HEAD's commit, "" outside a git checkout.
func gitRevision(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
