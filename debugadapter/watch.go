package debugadapter

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/kloop/kloop/session/watch"
)

// watchForChanges relaunches the program whenever a Go file of its module
// changes — an editor's save, a git checkout, go generate — for as long as
// the session lasts. Relaunches serialise on relaunchMu, and the watcher's
// debounce folds a save storm into a few rebuilds.
func (b *Bridge) watchForChanges(t target) {
	root := moduleRoot(t.dir)
	var ignore []string
	if b.staging != "" {
		ignore = append(ignore, b.staging)
	}
	_, err := watch.Start(b.ctx, watch.Config{Root: root, IgnoreDirs: ignore, Logger: b.log}, func([]string) {
		go func() {
			if _, err := b.Relaunch(b.ctx); err != nil && !errors.Is(err, ErrSessionEnded) {
				// A build error was already shown with its diagnostics.
				var be *BuildError
				if !errors.As(err, &be) {
					b.output("important", "kloop: relaunch on save failed: "+err.Error()+"\n")
				}
			}
		}()
	})
	if err != nil {
		b.output("important", "kloop: cannot watch "+root+" for changes ("+err.Error()+"); relaunch with the restart button\n")
	}
}

// moduleRoot is the nearest directory at or above dir holding go.mod,
// else dir.
func moduleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
