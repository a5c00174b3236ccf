package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCache fills a cache's bin dir with scripts that answer --version
// like the real binaries, so verification and manifest logic run for real
// without a 13-minute build.
func fakeCache(t *testing.T) Cache {
	t.Helper()
	c := Cache{Dir: t.TempDir()}
	if err := os.MkdirAll(c.BinDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		writeScript(t, filepath.Join(c.BinDir(), b.name), b.wantVersion)
	}
	for group := range groupPatches {
		if err := c.writePatchStamp(group); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func writeScript(t *testing.T, path, version string) {
	t.Helper()
	script := "#!/bin/sh\necho '" + version + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCacheWithoutManifestIsNotReady(t *testing.T) {
	c := fakeCache(t)
	st := c.Check()
	if st.Ready || len(st.Problems) == 0 || !strings.Contains(st.Problems[0], "no manifest") {
		t.Fatalf("Check() = %+v, want not ready because of the missing manifest", st)
	}
}

func TestEnsureAdoptsVerifiedBinariesWithoutBuilding(t *testing.T) {
	c := fakeCache(t)
	var lines []string
	err := c.Ensure(context.Background(), func(p Progress) { lines = append(lines, p.String()) })
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if len(lines) != 0 {
		t.Errorf("Ensure reported build steps for binaries that were all fine: %q", lines)
	}
	if st := c.Check(); !st.Ready {
		t.Fatalf("after Ensure: %+v", st)
	}
	m, err := c.readManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Binaries["kube-apiserver"].Version; got != "Kubernetes "+KubernetesVersion {
		t.Errorf("manifest version of kube-apiserver = %q", got)
	}
}

func TestCheckDetectsDamagedBinaries(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"missing", func(t *testing.T, path string) { os.Remove(path) }, "etcd is missing"},
		{"truncated", func(t *testing.T, path string) { os.Truncate(path, 3) }, "etcd has size 3"},
		{"same size, other content", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			data[len(data)-2] ^= 1
			// A new mtime forces a hash comparison.
			os.WriteFile(path, data, 0o755)
			os.Chtimes(path, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
		}, "etcd does not match its sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeCache(t)
			if err := c.Ensure(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, filepath.Join(c.BinDir(), "etcd"))
			st := c.Check()
			if st.Ready {
				t.Fatalf("damaged cache reported ready")
			}
			if !strings.Contains(strings.Join(st.Problems, "\n"), tt.want) {
				t.Errorf("problems %q do not mention %q", st.Problems, tt.want)
			}
		})
	}
}

func TestCheckTrustsTouchedButIntactBinary(t *testing.T) {
	c := fakeCache(t)
	if err := c.Ensure(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(c.BinDir(), "kwok"), later, later)
	if st := c.Check(); !st.Ready {
		t.Errorf("touched but intact binary rejected: %v", st.Problems)
	}
}

func TestVerifyBinaryRejectsWrongVersion(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "kube-apiserver"), "Kubernetes v0.0.0-master")
	_, err := verifyBinary(context.Background(), dir, binaries[0])
	if err == nil || !strings.Contains(err.Error(), "want \"Kubernetes "+KubernetesVersion+"\"") {
		t.Errorf("verifyBinary of a wrong version: %v", err)
	}
}

func TestConcurrentEnsureSharesOneResult(t *testing.T) {
	c := fakeCache(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Ensure(context.Background(), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure #%d: %v", i, err)
		}
	}
	if st := c.Check(); !st.Ready {
		t.Errorf("after concurrent Ensure: %v", st.Problems)
	}
}

func TestLockWaitEndsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	unlock, err := lockFile(context.Background(), path, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// flock locks are per open file, so a second open in this process waits too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := lockFile(ctx, path, "test", nil); err == nil || !strings.Contains(err.Error(), "wait for the sandbox build lock") {
		t.Errorf("second lock while held: %v", err)
	}
}

// A cache built before kloop patched kwok must not be trusted: its kwok
// never ends a port-forward the pod closed.
func TestCheckRejectsKwokWithoutThePatch(t *testing.T) {
	for _, tt := range []struct {
		name, stamp, want string
	}{
		{"no stamp", "", "kwok was built without kloop's patch " + kwokPatch},
		{"older patch", "portforward-0\n", "kwok has kloop's patch portforward-0, want " + kwokPatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeCache(t)
			if err := c.Ensure(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			os.Remove(c.stampPath(groupKwok))
			if tt.stamp != "" {
				os.WriteFile(c.stampPath(groupKwok), []byte(tt.stamp), 0o644)
			}
			st := c.Check()
			if st.Ready || !strings.Contains(strings.Join(st.Problems, "\n"), tt.want) {
				t.Errorf("Check() = %+v, want not ready: %q", st, tt.want)
			}
		})
	}
}

func TestKwokPatchesApplyToThePinnedKwok(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "src", "kwok")
	if err := prepareKwokSource(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range kwokPatches {
		src, err := os.ReadFile(filepath.Join(dir, "kwok", p.file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), p.new) {
			t.Errorf("%s does not have the patched code %q", p.file, p.new)
		}
	}
}
