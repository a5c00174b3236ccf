package agentimage

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushOptions say what to publish where.
type PushOptions struct {
	BuildOptions
	// Ref is where to push (ParseRef's result).
	Ref name.Tag
	// Platforms; DefaultPlatforms when empty.
	Platforms []v1.Platform
	// Progress gets one line per step (nil: none).
	Progress func(string)
	// Remote options for the registry; the default keychain (docker's
	// config.json and credential helpers) when empty.
	Remote []remote.Option
}

// Pushed is what was published.
type Pushed struct {
	Ref name.Tag
	// Digest of the index: Ref's repository @Digest names exactly this push.
	Digest    v1.Hash
	Platforms []v1.Platform
	// Images are the per-platform manifest digests, in Platforms order.
	Images []v1.Hash
}

// Pinned is the reference to configure: the tag, pinned to the digest.
func (p Pushed) Pinned() string { return p.Ref.String() + "@" + p.Digest.String() }

// Build cross-builds and assembles the index without pushing it.
func Build(ctx context.Context, o PushOptions) (v1.ImageIndex, []v1.Platform, error) {
	plats := o.Platforms
	if len(plats) == 0 {
		plats = DefaultPlatforms
	}
	created, err := CreationTime()
	if err != nil {
		return nil, nil, err
	}
	var images []v1.Image
	for _, plat := range plats {
		o.progress("building kloop " + o.Version + " for " + plat.String())
		bin, err := CrossBuild(ctx, o.BuildOptions, plat)
		if err != nil {
			return nil, nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, nil, fmt.Errorf("read the %s binary: %w", plat, err)
		}
		img, err := Image(data, plat, o.Version, created)
		if err != nil {
			return nil, nil, fmt.Errorf("image for %s: %w", plat, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, nil, err
		}
		if err := Verify(cf); err != nil {
			return nil, nil, fmt.Errorf("image for %s: %w", plat, err)
		}
		images = append(images, img)
	}
	idx, err := Index(images, o.Version)
	return idx, plats, err
}

// Push builds the index and pushes it (blobs, the per-platform manifests,
// then the index under the tag).
func Push(ctx context.Context, o PushOptions) (*Pushed, error) {
	idx, plats, err := Build(ctx, o)
	if err != nil {
		return nil, err
	}
	res := &Pushed{Ref: o.Ref, Platforms: plats}
	if res.Digest, err = idx.Digest(); err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		res.Images = append(res.Images, d.Digest)
	}
	ropts := o.Remote
	if len(ropts) == 0 {
		ropts = []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	}
	ropts = append(ropts, remote.WithContext(ctx))
	o.progress("pushing " + o.Ref.String())
	if err := remote.WriteIndex(o.Ref, idx, ropts...); err != nil {
		return nil, fmt.Errorf("push %s: %w", o.Ref, err)
	}
	return res, nil
}

func (o PushOptions) progress(s string) {
	if o.Progress != nil {
		o.Progress(s)
	}
}
