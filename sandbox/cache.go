package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// manifestName is written into the bin directory only after a complete,
// verified build.
const manifestName = ".manifest.json"

// binary is one executable of the cache and how to tell it is the right one.
type binary struct {
	name  string
	group string // the build step that produces it
	// wantVersion must appear in the output of `name --version`.
	wantVersion string
}

var binaries = []binary{
	{name: "kube-apiserver", group: groupKube, wantVersion: "Kubernetes " + KubernetesVersion},
	{name: "kube-controller-manager", group: groupKube, wantVersion: "Kubernetes " + KubernetesVersion},
	{name: "kube-scheduler", group: groupKube, wantVersion: "Kubernetes " + KubernetesVersion},
	{name: "etcd", group: groupEtcd, wantVersion: "etcd Version: " + strings.TrimPrefix(EtcdVersion, "v")},
	{name: "kwok", group: groupKwok, wantVersion: strings.TrimPrefix(KwokVersion, "v")},
	{name: "kwokctl", group: groupKwok, wantVersion: strings.TrimPrefix(KwokVersion, "v")},
}

const (
	groupKube = "kube"
	groupEtcd = "etcd"
	groupKwok = "kwok"
)

// Cache is one versioned build cache directory.
type Cache struct {
	// Dir holds src/ (the generated build modules), bin/ and build.log.
	Dir string
}

// DefaultCache is $XDG_CACHE_HOME/kloop/sandbox/<CacheKey()>, with
// XDG_CACHE_HOME defaulting to ~/.cache.
func DefaultCache() (Cache, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return Cache{}, fmt.Errorf("find the sandbox cache: no XDG_CACHE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return Cache{Dir: filepath.Join(base, "kloop", "sandbox", CacheKey())}, nil
}

// BinDir is where the binaries are.
func (c Cache) BinDir() string { return filepath.Join(c.Dir, "bin") }

func (c Cache) manifestPath() string { return filepath.Join(c.BinDir(), manifestName) }

// BuildLog is the file the go commands of the last build wrote to.
func (c Cache) BuildLog() string { return filepath.Join(c.Dir, "build.log") }

type manifestEntry struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	SHA256  string    `json:"sha256"`
	Version string    `json:"version"`
}

type manifest struct {
	Key      string                   `json:"key"`
	Written  time.Time                `json:"written"`
	Binaries map[string]manifestEntry `json:"binaries"`
}

// CacheState says whether the cache can be used as it is.
type CacheState struct {
	// Ready means every binary matches the manifest.
	Ready bool `json:"ready"`
	// Problems names each binary that is missing or does not match, in
	// words a user can act on. Empty when Ready.
	Problems []string `json:"problems,omitempty"`
	BinDir   string   `json:"binDir"`
}

// Check compares the binaries with the manifest without running them. A
// binary whose size and mtime match is trusted; one whose mtime changed is
// hashed, so a touched but intact file still passes.
func (c Cache) Check() CacheState {
	st := CacheState{BinDir: c.BinDir()}
	m, err := c.readManifest()
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
		return st
	}
	for _, b := range binaries {
		want, ok := m.Binaries[b.name]
		if !ok {
			st.Problems = append(st.Problems, fmt.Sprintf("%s is not in the manifest", b.name))
			continue
		}
		if p := c.checkBinary(b.name, want); p != "" {
			st.Problems = append(st.Problems, p)
		}
	}
	for group := range groupPatches {
		if p := c.checkPatch(group); p != "" {
			st.Problems = append(st.Problems, p)
		}
	}
	st.Ready = len(st.Problems) == 0
	return st
}

func (c Cache) checkBinary(name string, want manifestEntry) string {
	path := filepath.Join(c.BinDir(), name)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%s is missing", name)
	}
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if fi.Size() != want.Size {
		return fmt.Sprintf("%s has size %d, the manifest says %d (truncated or replaced)", name, fi.Size(), want.Size)
	}
	if fi.ModTime().Equal(want.ModTime) {
		return ""
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if sum != want.SHA256 {
		return fmt.Sprintf("%s does not match its sha256 in the manifest (corrupt or replaced)", name)
	}
	return ""
}

func (c Cache) readManifest() (*manifest, error) {
	data, err := os.ReadFile(c.manifestPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no manifest %s: the cache is missing or was not completely built", c.manifestPath())
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is corrupt: %v", c.manifestPath(), err)
	}
	if m.Key != CacheKey() {
		return nil, fmt.Errorf("manifest %s is for %q, not %q", c.manifestPath(), m.Key, CacheKey())
	}
	return &m, nil
}

// writeManifest records every binary; callers verified them first.
func (c Cache) writeManifest(versions map[string]string) error {
	m := manifest{Key: CacheKey(), Written: time.Now().UTC(), Binaries: map[string]manifestEntry{}}
	for _, b := range binaries {
		path := filepath.Join(c.BinDir(), b.name)
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
		m.Binaries[b.name] = manifestEntry{Size: fi.Size(), ModTime: fi.ModTime(), SHA256: sum, Version: versions[b.name]}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	tmp := c.manifestPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.Rename(tmp, c.manifestPath()); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// verifyBinary runs `path --version` and returns its first line when it
// reports the expected version.
func verifyBinary(ctx context.Context, dir string, b binary) (string, error) {
	path := filepath.Join(dir, b.name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s is missing", b.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		if line := firstLine(string(out)); line != "" {
			return "", fmt.Errorf("%s --version failed (%v): %s", b.name, err, line)
		}
		return "", fmt.Errorf("%s --version failed: %v", b.name, err)
	}
	if !strings.Contains(string(out), b.wantVersion) {
		return "", fmt.Errorf("%s --version says %q, want %q", b.name, firstLine(string(out)), b.wantVersion)
	}
	return firstLine(string(out)), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
