package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DockerManifest is one entry of a `docker save` archive's manifest.json.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes img, tagged ref, to path as one tar that is at once
//   - an OCI image layout (oci-layout, index.json, blobs/sha256/...), as
//     read by containerd (`ctr image import`, `kind load image-archive`),
//     skopeo (oci-archive:), crane and go-containerregistry's layout package;
//   - a `docker save` archive: manifest.json names the same blobs, so
//     `docker load` (which decompresses gzip layers) takes it too.
//
// This is the layout `docker save` itself has produced since Docker 25.
// The file is written to a temporary name and renamed, and its bytes depend
// only on the image.
func WriteArchive(path string, ref name.Tag, img v1.Image) (err error) {
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Digest:    digest,
			Size:      int64(len(rawManifest)),
			Annotations: map[string]string{
				"io.containerd.image.name":          ContainerdName(ref),
				"org.opencontainers.image.ref.name": ref.TagStr(),
			},
		}},
	}
	dm := []DockerManifest{{Config: blobPath(cfgName), RepoTags: []string{DockerTag(ref)}}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		dm[0].Layers = append(dm[0].Layers, blobPath(d))
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	dockerJSON, err := json.Marshal(dm)
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), ".agentimage-*.tar")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	tw := tar.NewWriter(bw)
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
		}
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: name, Mode: 0o755,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
		})
	}
	bytesFile := func(name string, b []byte) error { return file(name, int64(len(b)), bytes.NewReader(b)) }

	if err := bytesFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	if err := bytesFile(blobPath(digest), rawManifest); err != nil {
		return err
	}
	if err := bytesFile(blobPath(cfgName), rawConfig); err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blobPath(d), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	if err := bytesFile("index.json", indexJSON); err != nil {
		return err
	}
	if err := bytesFile("manifest.json", dockerJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// DockerTag is ref as typed, with its tag made explicit: what docker load
// tags the image with.
func DockerTag(ref name.Tag) string {
	s := ref.String()
	if !strings.HasSuffix(s, ":"+ref.TagStr()) {
		s += ":" + ref.TagStr()
	}
	return s
}

// ContainerdName is ref fully qualified the way containerd and the CRI
// normalise image names (docker.io/library/x:tag), so that a pod's image
// "x" finds the imported image.
func ContainerdName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
