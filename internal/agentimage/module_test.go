package agentimage

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestCrossBuildFromModuleVersion is the path of a kloop installed with
// `go install ...@VERSION` and no checkout: the agent is built from the
// kloop module at VERSION as the go command fetches it. The module proxy
// here is a directory (GOPROXY=file://) serving this repository's files
// as that version, in front of the module cache's own download directory
// for the dependencies, so nothing is fetched from the network and the
// shared module cache is left alone (a private GOMODCACHE).
func TestCrossBuildFromModuleVersion(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	src, err := FindSource(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	const version = "v0.0.0-agentimage.module.test"
	proxy := t.TempDir()
	writeModuleProxy(t, src, proxy, version)
	sharedCache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	modCache := t.TempDir()
	t.Cleanup(func() { makeWritable(modCache) }) // the module cache is read-only
	t.Setenv("GOMODCACHE", modCache)
	t.Setenv("GOPROXY", "file://"+proxy+",file://"+filepath.Join(strings.TrimSpace(string(sharedCache)), "cache", "download"))
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GONOSUMDB", MainModule)

	plat := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	bin, err := CrossBuild(t.Context(), BuildOptions{ModuleVersion: version, Version: version, Dir: t.TempDir()}, plat)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "kloop "+version {
		t.Errorf("the binary built from the module says %q (%v), want kloop %s", out, err, version)
	}

	// A version the proxy does not have: the go command's answer, named.
	_, err = CrossBuild(t.Context(), BuildOptions{ModuleVersion: "v9.9.9", Version: "v9.9.9", Dir: t.TempDir()}, plat)
	if err == nil || !strings.Contains(err.Error(), "fetch "+MainModule+"@v9.9.9") {
		t.Errorf("missing version: err %v", err)
	}
}

// writeModuleProxy lays out a GOPROXY directory serving the module in src
// (its tracked and untracked-but-not-ignored files, without nested
// modules) as version.
func writeModuleProxy(t *testing.T, src, proxy, version string) {
	t.Helper()
	list, err := exec.Command("git", "-C", src, "ls-files", "--cached", "--others", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatal(err)
	}
	files := strings.Split(strings.TrimRight(string(list), "\x00"), "\x00")
	nested := map[string]bool{}
	for _, f := range files {
		if filepath.Base(f) == "go.mod" && f != "go.mod" {
			nested[filepath.Dir(f)+"/"] = true
		}
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
files:
	for _, f := range files {
		for dir := range nested {
			if strings.HasPrefix(f, dir) {
				continue files
			}
		}
		st, err := os.Lstat(filepath.Join(src, f))
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted meanwhile, or a symlink (not allowed in module zips)
		}
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(MainModule + "@" + version + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(proxy, MainModule, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-01-01T00:00:00Z"}`),
		version + ".mod":  gomod,
		version + ".zip":  zbuf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func makeWritable(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}
