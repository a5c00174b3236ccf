package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kwokPatch names the change kloop makes to kwok's port-forward before
// building it. It is written to bin/.kwok.patch after the build, so a cache
// holding an unpatched kwok (or an older patch) rebuilds kwok, and only
// kwok. Change it whenever kwokPatches change.
const kwokPatch = "portforward-pipe-stdin-1"

// kwokPatches are the source edits applied to kwok's module before the
// build, as exact replacements that must each match once.
//
// kwok runs a PortForward command with the port-forward stream as the
// command's stdin, so exec.Cmd.Wait also waits for the goroutine that reads
// the stream, which only returns when the client writes or closes. A pod
// that ends the connection (an HTTP server closing an idle keep-alive
// connection) was therefore never seen to end it, and the client's next
// request on that connection waited forever. A real kubelet (containerd's
// port-forward) ends the stream within a second of either side ending.
// With a piped stdin, Wait returns when the command exits, and the stream
// closes then.
var kwokPatches = []struct{ file, old, new string }{{
	file: "pkg/kwok/server/debugging_port_forword.go",
	old:  "utilsexec.Exec(utilsexec.WithReadWriter(ctx, stream), forward.Command[0]",
	new:  "utilsexec.Exec(utilsexec.WithPipeStdin(utilsexec.WithReadWriter(ctx, stream), true), forward.Command[0]",
}}

// kwokGoMod is the go.mod of the throwaway module that builds the patched
// kwok from its copy in ./kwok.
func kwokGoMod() string {
	return fmt.Sprintf("module kloop.local/sandbox/kwok\n\ngo 1.26.0\n\nrequire %s %s\n\nreplace %s => ./kwok\n", kwokModule, KwokVersion, kwokModule)
}

// prepareKwokSource copies kwok's module from the module cache into
// dir/kwok (downloading it if needed) and applies kwokPatches.
func prepareKwokSource(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", kwokModule+"@"+KwokVersion)
	// Outside dir, whose go.mod replaces the very module asked for.
	cmd.Dir = filepath.Dir(dir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("download %s@%s: %v: %s", kwokModule, KwokVersion, err, strings.TrimSpace(stderr.String()))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return fmt.Errorf("download %s@%s: read go's answer: %w", kwokModule, KwokVersion, err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return fmt.Errorf("download %s@%s: %s", kwokModule, KwokVersion, mod.Error)
	}
	dst := filepath.Join(dir, "kwok")
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("clear %s: %w", dst, err)
	}
	if err := copyTree(mod.Dir, dst); err != nil {
		return fmt.Errorf("copy kwok's source: %w", err)
	}
	for _, p := range kwokPatches {
		path := filepath.Join(dst, p.file)
		src, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("patch kwok: %w", err)
		}
		if n := bytes.Count(src, []byte(p.old)); n != 1 {
			return fmt.Errorf("patch kwok %s: the code to change appears %d times, want once; KwokVersion changed without kwokPatches", p.file, n)
		}
		if err := os.WriteFile(path, bytes.Replace(src, []byte(p.old), []byte(p.new), 1), 0o644); err != nil {
			return fmt.Errorf("patch kwok: %w", err)
		}
	}
	return nil
}

// copyTree copies regular files and directories, writable by the owner
// (the module cache's copies are read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func (c Cache) stampPath(group string) string {
	return filepath.Join(c.BinDir(), "."+group+".patch")
}

// groupPatches are the groups built from patched source, by patch name.
var groupPatches = map[string]string{groupKwok: kwokPatch}

// checkPatch says what is wrong with group's patch stamp, or "".
func (c Cache) checkPatch(group string) string {
	want, ok := groupPatches[group]
	if !ok {
		return ""
	}
	got, err := os.ReadFile(c.stampPath(group))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%s was built without kloop's patch %s", group, want)
	}
	if err != nil {
		return fmt.Sprintf("%s patch stamp: %v", group, err)
	}
	if strings.TrimSpace(string(got)) != want {
		return fmt.Sprintf("%s has kloop's patch %s, want %s", group, strings.TrimSpace(string(got)), want)
	}
	return ""
}

func (c Cache) writePatchStamp(group string) error {
	want, ok := groupPatches[group]
	if !ok {
		return nil
	}
	if err := os.WriteFile(c.stampPath(group), []byte(want+"\n"), 0o644); err != nil {
		return fmt.Errorf("record %s's patch: %w", group, err)
	}
	return nil
}
