package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// progressInterval is how often a running build step reports.
const progressInterval = 15 * time.Second

// EnsureBinaries makes sure the default cache holds every control-plane
// binary at the pinned versions, building what is missing, and returns the
// bin directory. The first build takes about 13 minutes on 2 cores; later
// calls return in well under a second.
func EnsureBinaries(ctx context.Context, progress ProgressFunc) (string, error) {
	c, err := DefaultCache()
	if err != nil {
		return "", err
	}
	if err := c.Ensure(ctx, progress); err != nil {
		return "", err
	}
	return c.BinDir(), nil
}

// Ensure verifies the cache and builds whatever is missing or wrong. It
// holds an exclusive lock on the cache while it checks and builds, so
// concurrent callers (two test binaries) build once and share the result.
func (c Cache) Ensure(ctx context.Context, progress ProgressFunc) error {
	if c.Check().Ready {
		return nil
	}
	if err := os.MkdirAll(c.BinDir(), 0o755); err != nil {
		return fmt.Errorf("create sandbox cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(c.Dir, ".lock"), "another sandbox build", progress)
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have finished the build while we waited.
	if c.Check().Ready {
		return nil
	}
	return c.build(ctx, progress)
}

// build verifies every binary and rebuilds the groups with a missing or
// wrong one; it trusts binaries that answer with the right version, so a
// cache built by hand (or interrupted after some groups) is reused.
func (c Cache) build(ctx context.Context, progress ProgressFunc) error {
	// The manifest is only true again after the build.
	if err := os.Remove(c.manifestPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reset sandbox cache manifest: %w", err)
	}
	versions := map[string]string{}
	stale := map[string][]string{}
	for _, b := range binaries {
		v, err := verifyBinary(ctx, c.BinDir(), b)
		if err != nil {
			stale[b.group] = append(stale[b.group], err.Error())
			continue
		}
		versions[b.name] = v
	}
	for group := range groupPatches {
		if p := c.checkPatch(group); p != "" {
			stale[group] = append(stale[group], p)
		}
	}
	var steps []buildStep
	for _, s := range c.buildSteps() {
		if len(stale[s.group]) > 0 {
			steps = append(steps, s)
		}
	}
	for i, s := range steps {
		progress.say(Progress{Step: i + 1, Steps: len(steps), Message: "rebuilding because " + strings.Join(stale[s.group], "; ")})
		// go install refuses to overwrite a file that is not a Go binary.
		for _, b := range binaries {
			if b.group == s.group {
				if err := os.Remove(filepath.Join(c.BinDir(), b.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove stale %s: %w", b.name, err)
				}
			}
		}
		stop := progress.tick(Progress{Step: i + 1, Steps: len(steps), Message: s.what}, progressInterval)
		err := c.runStep(ctx, s)
		stop(err == nil)
		if err != nil {
			return err
		}
		for _, b := range binaries {
			if b.group != s.group {
				continue
			}
			v, err := verifyBinary(ctx, c.BinDir(), b)
			if err != nil {
				return fmt.Errorf("sandbox build %s produced a bad binary: %w", s.group, err)
			}
			versions[b.name] = v
		}
		if err := c.writePatchStamp(s.group); err != nil {
			return err
		}
	}
	if err := c.writeManifest(versions); err != nil {
		return err
	}
	return nil
}

type buildStep struct {
	group string
	what  string
	dir   string // working directory, created
	goMod string // go.mod to write into dir, if any
	// prepare runs in dir before the go command (nil: nothing to do).
	prepare func(ctx context.Context, dir string) error
	env     []string // extra environment
	args    []string // arguments of `go`
}

func (c Cache) buildSteps() []buildStep {
	bin := c.BinDir()
	return []buildStep{
		{
			group: groupKube,
			what:  "building kube-apiserver, kube-controller-manager, kube-scheduler " + KubernetesVersion + " (about 13 min the first time)",
			dir:   filepath.Join(c.Dir, "src", "kube"),
			goMod: kubeGoMod(),
			args: []string{"build", "-mod=mod", "-trimpath", "-ldflags", kubeLDFlags(), "-o", bin + "/",
				kubernetesModule + "/cmd/kube-apiserver", kubernetesModule + "/cmd/kube-controller-manager", kubernetesModule + "/cmd/kube-scheduler"},
		},
		{
			group: groupEtcd,
			what:  "building etcd " + EtcdVersion,
			dir:   filepath.Join(c.Dir, "src", "etcd"),
			goMod: etcdGoMod(),
			args:  []string{"build", "-mod=mod", "-trimpath", "-o", filepath.Join(bin, "etcd"), etcdModule},
		},
		{
			group:   groupKwok,
			what:    "building kwok, kwokctl " + KwokVersion + " (with kloop's port-forward patch)",
			dir:     filepath.Join(c.Dir, "src", "kwok"),
			goMod:   kwokGoMod(),
			prepare: prepareKwokSource,
			args:    []string{"build", "-mod=mod", "-trimpath", "-o", bin + "/", kwokModule + "/cmd/kwok", kwokModule + "/cmd/kwokctl"},
		},
	}
}

func (c Cache) runStep(ctx context.Context, s buildStep) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("sandbox build %s: %w", s.group, err)
	}
	if s.goMod != "" {
		path := filepath.Join(s.dir, "go.mod")
		old, _ := os.ReadFile(path)
		if string(old) != s.goMod {
			// A go.sum of another go.mod would only confuse -mod=mod.
			_ = os.Remove(filepath.Join(s.dir, "go.sum"))
			if err := os.WriteFile(path, []byte(s.goMod), 0o644); err != nil {
				return fmt.Errorf("sandbox build %s: %w", s.group, err)
			}
		}
	}
	if s.prepare != nil {
		if err := s.prepare(ctx, s.dir); err != nil {
			return fmt.Errorf("sandbox build %s: %w", s.group, err)
		}
	}
	logFile, err := os.OpenFile(c.BuildLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("sandbox build %s: %w", s.group, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n=== %s %s: go %s\n", time.Now().UTC().Format(time.RFC3339), s.group, strings.Join(s.args, " "))
	var tail tailBuffer
	cmd := exec.CommandContext(ctx, "go", s.args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Env = append(cmd.Env, s.env...)
	cmd.Stdout = logFile
	cmd.Stderr = &teeWriter{a: logFile, b: &tail}
	// The go command spawns compilers; kill the whole group on cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("sandbox build %s interrupted: %w", s.group, ctx.Err())
		}
		return fmt.Errorf("sandbox build %s failed (%v); full log in %s; last lines:\n%s", s.group, err, c.BuildLog(), tail.String())
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting (and saying so) while
// another process holds it. The wait is bounded only by ctx, since the
// holder may be in the middle of a 13-minute build; it reports every
// progressInterval.
func lockFile(ctx context.Context, path, holder string, progress ProgressFunc) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open sandbox lock %s: %w", path, err)
	}
	start := time.Now()
	lastSaid := time.Time{}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Since(lastSaid) >= progressInterval {
			pid, _ := os.ReadFile(path)
			progress.say(Progress{Message: fmt.Sprintf("waiting for %s (pid %s, lock %s)", holder, strings.TrimSpace(string(pid)), path), Elapsed: time.Since(start)})
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for the sandbox build lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tailBuffer keeps the last lines written to it, for error messages.
type tailBuffer struct{ buf bytes.Buffer }

const tailBytes = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > 2*tailBytes {
		b := t.buf.Bytes()
		keep := append([]byte(nil), b[len(b)-tailBytes:]...)
		t.buf.Reset()
		t.buf.Write(keep)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	lines := strings.Split(strings.TrimSpace(t.buf.String()), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.b.Write(p)
	return t.a.Write(p)
}
