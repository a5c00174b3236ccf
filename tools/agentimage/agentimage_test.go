package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// testVersion is linked into the image's binary; the default reference must
// follow it the way intercept.DefaultImage() does.
const testVersion = "v0.0.0-agentimage.test"

// TestAgentImage builds the real image from this repository and checks it
// through both views of the tarball, then runs the binary from the image's
// root filesystem the way a container runtime and kube/intercept would.
func TestAgentImage(t *testing.T) {
	log.SetOutput(quietKo{os.Stderr})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kloop-agent-image.tar")
	t.Setenv("KLOOP_AGENT_IMAGE", "") // the default is under test
	res, err := Build(ctx, Options{Dir: repo, Out: out, Version: testVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s %s, %d bytes", res.Path, res.Ref, res.Digest, res.FileSize)

	// The default reference is what intercept.DefaultImage() returns in a
	// binary linked with the same version: evaluated, not re-derived.
	want := evalDefaultImage(t, ctx, repo, testVersion)
	if DockerTag(res.Ref) != want {
		t.Errorf("default image %q, intercept.DefaultImage() says %q", res.Ref, want)
	}

	// OCI layout view.
	dir := filepath.Join(t.TempDir(), "layout")
	untar(t, out, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", desc.MediaType)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != want {
		t.Errorf("io.containerd.image.name %q, want %q", got, want)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != testVersion {
		t.Errorf("org.opencontainers.image.ref.name %q, want %q", got, testVersion)
	}
	ociImg, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	// Every blob's digest and size, every layer's diff ID against the config.
	if err := validate.Image(ociImg); err != nil {
		t.Fatalf("OCI layout image invalid: %v", err)
	}

	// docker load view: manifest.json, read by go-containerregistry's
	// tarball package the way docker load reads it.
	var dm []DockerManifest
	readJSON(t, filepath.Join(dir, "manifest.json"), &dm)
	if len(dm) != 1 || !slices.Equal(dm[0].RepoTags, []string{want}) {
		t.Fatalf("manifest.json %+v, want one image tagged %s", dm, want)
	}
	tag, err := name.NewTag(want)
	if err != nil {
		t.Fatal(err)
	}
	dockerImg, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("docker archive view: %v", err)
	}
	if err := validate.Image(dockerImg); err != nil {
		t.Fatalf("docker archive image invalid: %v", err)
	}
	ociCfg, _ := ociImg.ConfigName()
	dockerCfg, _ := dockerImg.ConfigName()
	if ociCfg != dockerCfg {
		t.Errorf("config %s in the OCI view, %s in the docker view", ociCfg, dockerCfg)
	}

	// Config.
	cf, err := ociImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{AppPath}) || !slices.Equal(c.Cmd, []string{"agent"}) {
		t.Errorf("entrypoint %q cmd %q, want [%s] [agent]", c.Entrypoint, c.Cmd, AppPath)
	}
	if c.User != "65532" {
		t.Errorf("user %q, want 65532", c.User)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.title":    "kloop-agent",
		"org.opencontainers.image.source":   "https://github.com/kloop/kloop",
		"org.opencontainers.image.licenses": "MIT",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, c.Labels[k], v)
		}
	}
	// HEAD when built; others may commit meanwhile, so: a commit of this repository.
	if rev := c.Labels["org.opencontainers.image.revision"]; len(rev) != 40 {
		t.Errorf("revision label %q, want a commit id", rev)
	} else if out, err := exec.CommandContext(ctx, "git", "-C", repo, "cat-file", "-t", rev).Output(); err != nil || strings.TrimSpace(string(out)) != "commit" {
		t.Errorf("revision label %q is not a commit of %s: %v %s", rev, repo, err, out)
	}
	m, err := ociImg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.base.name"] != BaseName {
		t.Errorf("base annotation %q: the image is not on the in-process scratch base", m.Annotations["org.opencontainers.image.base.name"])
	}

	// Root filesystem: the binary and ko's data dir, nothing else.
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	files := extract(t, ociImg, rootfs)
	slices.Sort(files)
	if wantFiles := []string{"ko-app", "ko-app/kloop", "var", "var/run", "var/run/ko"}; !slices.Equal(files, wantFiles) {
		t.Errorf("rootfs holds %q, want %q", files, wantFiles)
	}
	bin := filepath.Join(rootfs, AppPath)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 != 0o111 {
		t.Errorf("%s mode %v, not executable by all", AppPath, st.Mode())
	}
	checkStaticLinuxAMD64(t, bin)

	// Run it the way the runtime would: entrypoint + cmd, in the image's
	// root, as the image's user, with the image's environment.
	run := func(args ...string) string {
		t.Helper()
		cmd := inImage(rootfs, cf, "/", append(slices.Clone(c.Entrypoint), args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	help := run(append(slices.Clone(c.Cmd), "--help")...)
	for _, s := range []string{"kloop agent [flags]", "--forward", "--control", "--token-file"} {
		if !strings.Contains(help, s) {
			t.Errorf("entrypoint+cmd --help lacks %q:\n%s", s, help)
		}
	}
	if v := run("version"); strings.TrimSpace(v) != "kloop "+testVersion {
		t.Errorf("version %q, want kloop %s", v, testVersion)
	}

	// And as kube/intercept injects the sidecar: Args replace Cmd, the
	// working directory is the token Secret's mount.
	runAgent(t, ctx, rootfs, cf)
}

// runAgent starts the agent from the image with the arguments
// kube/intercept's injectAgent writes and waits for its listeners.
func runAgent(t *testing.T, ctx context.Context, rootfs string, cf *v1.ConfigFile) {
	const mount = "/var/run/kloop" // intercept.TokenMountPath
	dir := filepath.Join(rootfs, mount)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(cf.Config.User)
		if err := os.Chown(tok, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	agentPort, controlPort := freePort(t), freePort(t)
	args := append(slices.Clone(cf.Config.Entrypoint), "agent",
		"--forward", strconv.Itoa(agentPort)+"=127.0.0.1:1/http",
		"--control", "127.0.0.1:"+strconv.Itoa(controlPort),
		"--token-file", "token")
	wd := mount
	if os.Geteuid() != 0 {
		wd = dir // no chroot: the host path
	}
	cmd := inImage(rootfs, cf, wd, args...)
	cmd.Env = append(cmd.Env, "POD_NAME=agentimage-test")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}()
	for _, port := range []int{agentPort, controlPort} {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("agent exited before listening on %s: %v\n%s", addr, waitErr, logs.String())
			default:
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("agent not listening on %s: %v\n%s", addr, err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A pod's termination: SIGTERM, and the agent exits cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("agent exit after SIGTERM: %v\n%s", waitErr, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("agent still running 10s after SIGTERM\n%s", logs.String())
	}
}

// inImage is argv run with the image's environment and user. As root (CI,
// sessions) it is chrooted into rootfs and runs as the image's user, so
// nothing from the host (libc, loader, /etc) can be used; otherwise the
// binary is run from rootfs directly.
func inImage(rootfs string, cf *v1.ConfigFile, wd string, argv ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(rootfs, argv[0]), argv[1:]...)
	cmd.Env = slices.Clone(cf.Config.Env)
	cmd.Dir = wd
	if os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(cf.Config.User)
		cmd.Path, cmd.Args[0] = argv[0], argv[0]
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     rootfs,
			Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)},
		}
	} else if wd == "/" {
		cmd.Dir = rootfs
	}
	return cmd
}

func checkStaticLinuxAMD64(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("ELF class %v machine %v type %v, want a 64-bit x86-64 executable", f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		t.Error(err)
	} else if len(libs) > 0 {
		t.Errorf("binary needs %q", libs)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bi.Path != AgentPackage {
		t.Errorf("binary is %s, want %s", bi.Path, AgentPackage)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
		}
	}
	// -trimpath keeps -ldflags out of the build info; the version the
	// binary reports is checked by running it.
}

// evalDefaultImage runs intercept.DefaultImage() in a program linked with
// -X intercept.Version=version. The program is an overlay file inside the
// main module, so the repository is not touched.
func evalDefaultImage(t *testing.T, ctx context.Context, repo, version string) string {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "main.go")
	prog := "package main\n\nimport (\n\t\"fmt\"\n\n\t\"" + MainModule + "/kube/intercept\"\n)\n\nfunc main() { fmt.Print(intercept.DefaultImage()) }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	virtual := filepath.Join(repo, "internal", "agentimageprobe", "main.go")
	ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{virtual: src}})
	ovFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "run", "-overlay="+ovFile,
		"-ldflags=-X "+InterceptVersionVar+"="+version, "./internal/agentimageprobe")
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("evaluating intercept.DefaultImage(): %v\n%s", err, stderr.String())
	}
	return string(out)
}

func extract(t *testing.T, img v1.Image, dst string) []string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	return untarReader(t, rc, dst)
}

func untar(t *testing.T, file, dst string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return untarReader(t, f, dst)
}

// untarReader unpacks regular files and directories, refusing anything else
// or any path that leaves dst, and returns the names it wrote.
func untarReader(t *testing.T, r io.Reader, dst string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(filepath.Clean("/"+h.Name), "/"), "/")
		if rel == "" {
			continue
		}
		p := filepath.Join(dst, rel)
		names = append(names, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o200)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestImageReference checks where the reference comes from: --image over
// $KLOOP_AGENT_IMAGE over the default, through scripts/agent-image.sh and
// the command line the Makefile uses.
func TestImageReference(t *testing.T) {
	log.SetOutput(quietKo{os.Stderr})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	repo, err := FindRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	tags := func(file string) []string {
		t.Helper()
		dir := t.TempDir()
		untar(t, file, dir)
		var dm []DockerManifest
		readJSON(t, filepath.Join(dir, "manifest.json"), &dm)
		var idx v1.IndexManifest
		readJSON(t, filepath.Join(dir, "index.json"), &idx)
		if len(dm) != 1 || len(idx.Manifests) != 1 {
			t.Fatalf("%d images in manifest.json, %d in index.json", len(dm), len(idx.Manifests))
		}
		return append(dm[0].RepoTags, idx.Manifests[0].Annotations["io.containerd.image.name"])
	}

	// The script, with both: the flag wins.
	out := filepath.Join(t.TempDir(), "flag.tar")
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "agent-image.sh"), "--image", "registry.example:5000/team/agent:flag", "--out", out)
	cmd.Env = append(os.Environ(), "KLOOP_AGENT_IMAGE=example.com/env/agent:env")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("agent-image.sh: %v\n%s", err, b)
	}
	if got := tags(out); !slices.Equal(got, []string{"registry.example:5000/team/agent:flag", "registry.example:5000/team/agent:flag"}) {
		t.Errorf("with --image and $KLOOP_AGENT_IMAGE: tagged %q", got)
	}

	// The environment alone; no tag means latest.
	out = filepath.Join(t.TempDir(), "env.tar")
	t.Setenv("KLOOP_AGENT_IMAGE", "example.com/env/agent")
	var stdout bytes.Buffer
	if err := run(ctx, []string{"--dir", repo, "--out", out}, &stdout); err != nil {
		t.Fatal(err)
	}
	if got := tags(out); !slices.Equal(got, []string{"example.com/env/agent:latest", "example.com/env/agent:latest"}) {
		t.Errorf("with $KLOOP_AGENT_IMAGE: tagged %q", got)
	}
	if !strings.Contains(stdout.String(), "example.com/env/agent:latest") {
		t.Errorf("output does not name the image:\n%s", stdout.String())
	}

	// A digest cannot name an image that is not built yet.
	err = run(ctx, []string{"--dir", repo, "--out", out, "--image", "example.com/a@sha256:" + strings.Repeat("0", 64)}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no digest") {
		t.Errorf("digest reference: err %v", err)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ in, docker, containerd string }{
		{"ghcr.io/kloop/agent:latest", "ghcr.io/kloop/agent:latest", "ghcr.io/kloop/agent:latest"},
		{"kloop/agent", "kloop/agent:latest", "docker.io/kloop/agent:latest"},
		{"agent:v1", "agent:v1", "docker.io/library/agent:v1"},
		{"localhost:5000/agent:dev", "localhost:5000/agent:dev", "localhost:5000/agent:dev"},
	} {
		ref, err := name.NewTag(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := DockerTag(ref); got != c.docker {
			t.Errorf("DockerTag(%s) = %s, want %s", c.in, got, c.docker)
		}
		if got := ContainerdName(ref); got != c.containerd {
			t.Errorf("ContainerdName(%s) = %s, want %s", c.in, got, c.containerd)
		}
	}
}
