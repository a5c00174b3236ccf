// Package agentimage builds kloop's traffic-agent image (the `kloop agent`
// subcommand of cmd/kloop) from kloop's own source and pushes it to a
// registry, with nothing but the Go toolchain and go-containerregistry: no
// Docker, no ko (ko's dependencies stay out of the main module; its image
// layout is kept, so images from tools/agentimage and from here agree).
//
// The image is an OCI index of one image per platform (linux/amd64 and
// linux/arm64 by default), each a single layer holding /ko-app/kloop, a
// static binary cross-built with `go build -trimpath`. Every timestamp is
// SOURCE_DATE_EPOCH (else the Unix epoch) and every tar header is fixed, so
// the same source, version and Go toolchain give the same digest.
package agentimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// AppPath is the binary inside the image, where ko puts it
	// (/ko-app/<last element of the import path>), so that images built
	// by tools/agentimage and by this package run the same way.
	AppPath = "/ko-app/kloop"
	// User is distroless's "nonroot" user, the one kube/intercept's
	// securityContext asks for.
	User = "65532"
	// AgentCommand is the image's default command: the entrypoint is the
	// bare binary because kube/intercept injects the sidecar with Args
	// ["agent", ...], which replace Cmd and keep the entrypoint.
	AgentCommand = "agent"
)

// DefaultPlatforms are the platforms of the pushed index.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Labels of every image; the version label is added per build.
var labels = map[string]string{
	"org.opencontainers.image.title":       "kloop-agent",
	"org.opencontainers.image.description": "kloop traffic agent (kloop agent), injected as the kloop-agent sidecar",
	"org.opencontainers.image.source":      "https://github.com/kloop/kloop",
	"org.opencontainers.image.licenses":    "MIT",
}

// CreationTime is $SOURCE_DATE_EPOCH, else the Unix epoch: the image's
// timestamps must not depend on when it was built.
func CreationTime() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970: unset it or set it to e.g. $(git log -1 --format=%%ct)", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// Image is the agent image for plat around binary, the kloop binary built
// for plat.
func Image(binary []byte, plat v1.Platform, version string, created time.Time) (v1.Image, error) {
	layer, err := appLayer(binary, created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		// Named, and never an empty map: go-containerregistry's in-memory
		// manifest would hold {} where its serialized form omits it.
		Annotations: map[string]string{"org.opencontainers.image.title": AppPath},
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "kloop agent-image push",
			Comment:   "kloop " + version + " for " + plat.String(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add the binary layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{AppPath}
	cf.Config.Cmd = []string{AgentCommand}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/ko-app"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.version": version}
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	return mutate.ConfigFile(img, cf)
}

// appLayer is a gzip layer with /ko-app and /ko-app/kloop, every header
// fixed (owner root, mode, mtime created) so its digest depends only on
// the binary.
func appLayer(binary []byte, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := path.Dir(strings.TrimPrefix(AppPath, "/"))
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(AppPath, "/"), Mode: 0o755, Size: int64(len(binary)), ModTime: created, Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Index is the multi-platform index of images, in the order given.
func Index(images []v1.Image, version string) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		plat := cf.Platform()
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, map[string]string{
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  labels["org.opencontainers.image.source"],
	}).(v1.ImageIndex), nil
}

// Verify checks that an image's config is the agent image's contract: it
// starts `kloop agent` (entrypoint the kloop binary, default command
// agent) as a non-root user. Both the push and the sandbox's pull check it.
func Verify(cf *v1.ConfigFile) error {
	c := cf.Config
	var problems []string
	if len(c.Entrypoint) != 1 || path.Base(c.Entrypoint[0]) != "kloop" {
		problems = append(problems, fmt.Sprintf("entrypoint %q is not the kloop binary (want [%s])", c.Entrypoint, AppPath))
	}
	if !slices.Equal(c.Cmd, []string{AgentCommand}) {
		problems = append(problems, fmt.Sprintf("command %q is not [%s]", c.Cmd, AgentCommand))
	}
	if root, err := isRoot(c.User); err != nil {
		problems = append(problems, err.Error())
	} else if root {
		problems = append(problems, fmt.Sprintf("user %q is root (want a non-root uid such as %s)", c.User, User))
	}
	if len(problems) > 0 {
		return errors.New("not a kloop agent image: " + strings.Join(problems, "; "))
	}
	return nil
}

// isRoot reports whether an image's user runs as uid 0. Only numeric uids
// can be vetted without the image's /etc/passwd, which the agent image
// does not have.
func isRoot(user string) (bool, error) {
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "root" {
		return true, nil
	}
	n, err := strconv.Atoi(uid)
	if err != nil {
		return false, fmt.Errorf("user %q is not a numeric uid (the image has no /etc/passwd to resolve it)", user)
	}
	return n == 0, nil
}

// ParseRef is the reference to push to: REF as given, tagged with version
// when it has no tag. A digest cannot name an image not pushed yet, and
// the tag "latest" is taken only when REF says it.
func ParseRef(ref, version string) (name.Tag, error) {
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("image reference %q has a digest: push to a repository[:tag]; the digest is printed after the push", ref)
	}
	if _, last, _ := strings.Cut(ref[strings.LastIndexByte(ref, '/')+1:], ":"); last == "" && !strings.HasSuffix(ref, ":") {
		if version == "" {
			return name.Tag{}, fmt.Errorf("image reference %q has no tag and this kloop has no version to tag it with: add :TAG or pass --version", ref)
		}
		ref += ":" + version
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: %w (want REGISTRY/REPOSITORY[:TAG], e.g. ghcr.io/acme/kloop-agent)", ref, err)
	}
	return tag, nil
}
