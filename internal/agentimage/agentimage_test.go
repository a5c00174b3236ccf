package agentimage

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		ref, version, want, err string
	}{
		{"ghcr.io/acme/kloop-agent", "v0.3.0", "ghcr.io/acme/kloop-agent:v0.3.0", ""},
		{"127.0.0.1:5000/kloop/agent", "v1.2.3", "127.0.0.1:5000/kloop/agent:v1.2.3", ""},
		{"127.0.0.1:5000/kloop/agent:dev", "v1.2.3", "127.0.0.1:5000/kloop/agent:dev", ""},
		// latest only when written.
		{"ghcr.io/acme/kloop-agent:latest", "v0.3.0", "ghcr.io/acme/kloop-agent:latest", ""},
		{"ghcr.io/acme/kloop-agent", "", "", "no tag and this kloop has no version"},
		{"ghcr.io/acme/kloop-agent@sha256:" + strings.Repeat("0", 64), "v1", "", "has a digest"},
		{"ghcr.io/Acme/agent", "v1", "", "want REGISTRY/REPOSITORY[:TAG]"},
		{"ghcr.io/acme/agent", "v1+build", "", "want REGISTRY/REPOSITORY[:TAG]"},
	} {
		got, err := ParseRef(c.ref, c.version)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRef(%q, %q): err %v, want %q", c.ref, c.version, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("ParseRef(%q, %q) = %v, %v; want %s", c.ref, c.version, got, err, c.want)
		}
	}
}

func TestVerify(t *testing.T) {
	good := v1.Config{Entrypoint: []string{AppPath}, Cmd: []string{"agent"}, User: User}
	for _, c := range []struct {
		name string
		edit func(*v1.Config)
		err  string
	}{
		{"the agent image", func(*v1.Config) {}, ""},
		{"root by default", func(c *v1.Config) { c.User = "" }, `user "" is root`},
		{"root by uid", func(c *v1.Config) { c.User = "0:0" }, `user "0:0" is root`},
		{"named user", func(c *v1.Config) { c.User = "nonroot" }, "not a numeric uid"},
		{"another program", func(c *v1.Config) { c.Entrypoint = []string{"/app/orders"} }, "not the kloop binary"},
		{"shell entrypoint", func(c *v1.Config) { c.Entrypoint = []string{"/bin/sh", "-c"} }, "not the kloop binary"},
		{"no agent command", func(c *v1.Config) { c.Cmd = nil }, `command [] is not [agent]`},
	} {
		cfg := good
		c.edit(&cfg)
		err := Verify(&v1.ConfigFile{Config: cfg})
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: Verify = %v, want %q", c.name, err, c.err)
		}
	}
}

func TestCreationTime(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Time
		err  bool
	}{
		{"", time.Unix(0, 0).UTC(), false},
		{"1700000000", time.Unix(1700000000, 0).UTC(), false},
		{"yesterday", time.Time{}, true},
		{"-5", time.Time{}, true},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", c.env)
		got, err := CreationTime()
		if (err != nil) != c.err || !got.Equal(c.want) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v, %v", c.env, got, err)
		}
	}
}

func TestModuleLine(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/kloop/kloop\n\ngo 1.26\n":   MainModule,
		"// comment\nmodule \"example.com/x\"\n":       "example.com/x",
		"go 1.26\n":                                    "",
		"modules github.com/kloop/kloop\n":             "",
		"module github.com/kloop/kloop // the agent\n": "github.com/kloop/kloop // the agent",
	} {
		if got := moduleLine([]byte(in)); got != want {
			t.Errorf("moduleLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestImageLayoutAndTimestamps checks the assembled image without a build:
// its layer holds the binary alone at AppPath, and SOURCE_DATE_EPOCH is the
// only clock it reads.
func TestImageLayoutAndTimestamps(t *testing.T) {
	bin := []byte("\x7fELF not really")
	plat := v1.Platform{OS: "linux", Architecture: "arm64"}
	epoch := time.Unix(0, 0).UTC()
	a, err := Image(bin, plat, "v1.0.0", epoch)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a wall clock would now differ
	b, _ := Image(bin, plat, "v1.0.0", epoch)
	later, _ := Image(bin, plat, "v1.0.0", time.Unix(1700000000, 0).UTC())
	other, _ := Image(append(bin, '!'), plat, "v1.0.0", epoch)
	da, _ := a.Digest()
	db, _ := b.Digest()
	dl, _ := later.Digest()
	do, _ := other.Digest()
	if da != db {
		t.Errorf("same inputs, digests %s and %s", da, db)
	}
	if da == dl || da == do {
		t.Errorf("another time or binary gave the same digest %s", da)
	}
	cf, _ := a.ConfigFile()
	if cf.Created.Time != epoch || cf.Platform().String() != "linux/arm64" {
		t.Errorf("config created %v platform %s", cf.Created.Time, cf.Platform())
	}
	rc := mutate.Extract(a)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		if h.Name == "ko-app/kloop" {
			data, _ := io.ReadAll(tr)
			if !bytes.Equal(data, bin) || h.Mode != 0o755 {
				t.Errorf("ko-app/kloop mode %o content %q", h.Mode, data)
			}
		}
	}
	if !slices.Equal(names, []string{"ko-app", "ko-app/kloop"}) {
		t.Errorf("layer holds %q", names)
	}
}

// TestPushReproducibleMultiArch builds the agent from this repository for
// both platforms, pushes it twice to a real registry server (go-
// containerregistry's, on loopback) and reads it back as a node would:
// the same digest both times, one image per platform, each a static
// executable of its architecture that starts `kloop agent` as non-root.
func TestPushReproducibleMultiArch(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	src, err := FindSource(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	const version = "v0.0.0-agentimage.test"
	// The user's environment must not leak into the image: with these
	// honoured, the build would fail (-race without cgo) or need a newer CPU.
	t.Setenv("GOFLAGS", "-race")
	t.Setenv("GOAMD64", "v3")
	push := func(tag string) *Pushed {
		t.Helper()
		ref, err := ParseRef(host+"/kloop/agent"+tag, version)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Push(t.Context(), PushOptions{
			BuildOptions: BuildOptions{Source: src, Version: version, Dir: t.TempDir()},
			Ref:          ref, Progress: func(s string) { t.Log(s) }, Remote: []remote.Option{},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := push("")
	if first.Ref.TagStr() != version {
		t.Errorf("pushed tag %q, want the version %s", first.Ref.TagStr(), version)
	}
	second := push(":again")
	if first.Digest != second.Digest {
		t.Errorf("two pushes of the same source: digests %s and %s", first.Digest, second.Digest)
	}

	// Read back through the registry, by tag.
	ref, _ := name.ParseReference(first.Ref.String())
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != first.Digest || desc.MediaType != types.OCIImageIndex {
		t.Fatalf("tag resolves to %s %s, want the index %s", desc.MediaType, desc.Digest, first.Digest)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var plats []string
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(cf); err != nil {
			t.Errorf("%s: %v", d.Platform, err)
		}
		if cf.Platform().String() != d.Platform.String() || cf.Config.Labels["org.opencontainers.image.version"] != version {
			t.Errorf("%s: config says %s, version label %q", d.Platform, cf.Platform(), cf.Config.Labels["org.opencontainers.image.version"])
		}
		bin := extractFile(t, img, strings.TrimPrefix(AppPath, "/"))
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: %v", d.Platform, err)
		}
		if f.Machine != machines[d.Platform.Architecture] || f.Type != elf.ET_EXEC {
			t.Errorf("%s: ELF machine %v type %v", d.Platform, f.Machine, f.Type)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked", d.Platform)
			}
		}
		bi, err := buildinfo.Read(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: build info: %v", d.Platform, err)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		want := map[string]string{"-trimpath": "true", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": d.Platform.Architecture, "-race": "", "-tags": BuildTag}
		if d.Platform.Architecture == "amd64" {
			want["GOAMD64"] = "v1"
		} else {
			want["GOARM64"] = "v8.0"
		}
		for k, v := range want {
			if settings[k] != v {
				t.Errorf("%s: build setting %s=%q, want %q", d.Platform, k, settings[k], v)
			}
		}
		if settings["vcs.revision"] != "" || bi.Path != Package {
			t.Errorf("%s: binary %s stamped with VCS revision %q", d.Platform, bi.Path, settings["vcs.revision"])
		}
		if d.Platform.Architecture == runtime.GOARCH {
			exe := filepath.Join(t.TempDir(), "kloop")
			writeExec(t, exe, bin)
			out, err := exec.Command(exe, "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "kloop "+version {
				t.Errorf("the %s binary says %q (%v), want kloop %s", d.Platform, out, err, version)
			}
		}
	}
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %q, want linux/amd64 and linux/arm64", plats)
	}
}
