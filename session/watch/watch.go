// Package watch tells the relaunch loop when a program's sources changed:
// fsnotify over the whole module tree (for git checkout, go generate and
// other edits outside the editor) plus explicit notifications from the
// editor's didSave, coalesced and debounced so that a burst of saves makes
// one rebuild, not one per file.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// GoPatterns are the files that change a Go program's build.
var GoPatterns = []string{"*.go", "go.mod", "go.sum", "go.work", "go.work.sum"}

// Defaults for zero Config fields.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultSaveDebounce = 10 * time.Millisecond
	DefaultMaxDelay     = time.Second
)

// Config says what to watch.
type Config struct {
	// Root is the directory watched recursively (the module or the
	// directory of .kloop.yaml).
	Root string
	// Patterns select the files whose change triggers, relative to Root with
	// '/' separators; "**" matches any number of directories, and a pattern
	// without '/' matches the base name at any depth. Empty means GoPatterns.
	Patterns []string
	// IgnoreDirs are further directories to skip, such as where the binary
	// is built. .git and other dot directories, vendor and node_modules are
	// always skipped.
	IgnoreDirs []string
	// Debounce is the quiet time after the last change before the trigger
	// fires; DefaultDebounce if 0.
	Debounce time.Duration
	// SaveDebounce replaces Debounce for an editor save (Notify) that comes
	// after a quiet spell: the editor says the file is complete, so the
	// rebuild starts almost at once. Changes that keep coming after it wait
	// for Debounce as usual, so a storm still makes few triggers.
	// DefaultSaveDebounce if 0.
	SaveDebounce time.Duration
	// MaxDelay bounds how long a continuous stream of changes can postpone
	// the trigger; DefaultMaxDelay if 0.
	MaxDelay time.Duration
	Logger   *slog.Logger
}

// Watcher watches a tree until its context ends or Close is called.
type Watcher struct {
	cfg      Config
	root     string
	ignore   []string
	onChange func(paths []string)
	fsw      *fsnotify.Watcher
	dirs     map[string]bool // watched directories; only the loop touches it after Start
	notify   chan string
	cancel   context.CancelFunc
	done     chan struct{}
	closeErr error
	once     sync.Once
}

// Start begins watching cfg.Root. onChange gets the changed paths (sorted,
// without duplicates; empty when the kernel dropped events and it is only
// known that something changed), one call at a time, from the watcher's
// goroutine: keep it short.
func Start(ctx context.Context, cfg Config, onChange func(paths []string)) (*Watcher, error) {
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", cfg.Root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("watch %s: not a directory; give the program's module or workspace directory", cfg.Root)
	}
	for _, p := range cfg.Patterns {
		if _, err := path.Match(strings.ReplaceAll(p, "**", "x"), ""); err != nil {
			return nil, fmt.Errorf("watch pattern %q: %w", p, err)
		}
	}
	if len(cfg.Patterns) == 0 {
		cfg.Patterns = GoPatterns
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.SaveDebounce <= 0 {
		cfg.SaveDebounce = DefaultSaveDebounce
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{
		cfg: cfg, root: root, onChange: onChange, fsw: fsw, dirs: map[string]bool{},
		notify: make(chan string, 256), cancel: cancel, done: make(chan struct{}),
	}
	for _, d := range cfg.IgnoreDirs {
		if abs, err := filepath.Abs(d); err == nil {
			w.ignore = append(w.ignore, abs)
		}
	}
	if _, err := w.addTree(root); err != nil {
		cancel()
		fsw.Close()
		return nil, err
	}
	go w.loop(ctx)
	return w, nil
}

// Notify reports a change the editor saw (LSP didSave). It is filtered and
// debounced like a file system event, so a save seen both ways counts once.
func (w *Watcher) Notify(path string) {
	select {
	case w.notify <- path:
	case <-w.done:
	}
}

// Close stops watching and waits for the watcher's goroutine to end.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		w.cancel()
		<-w.done
		w.closeErr = w.fsw.Close()
	})
	return w.closeErr
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	pending := map[string]bool{}
	armed := false // a trigger is due once things go quiet
	fast := false  // this batch fires SaveDebounce after an editor save
	calm := false  // this batch began after a quiet spell
	var first, lastFire time.Time
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()

	// changed records a change; "" means "something, unknown what".
	changed := func(p string, saved bool) {
		now := time.Now()
		if !armed {
			armed, fast = true, false
			first = now
			calm = now.Sub(lastFire) > w.cfg.Debounce
		}
		if p != "" {
			pending[p] = true
		}
		if fast {
			return // due soon; later changes join this batch
		}
		if saved && calm && now.Sub(first) < w.cfg.Debounce {
			fast = true
			quiet.Reset(w.cfg.SaveDebounce)
			return
		}
		wait := w.cfg.Debounce
		if left := w.cfg.MaxDelay - time.Since(first); left < wait {
			wait = max(left, 0)
		}
		quiet.Reset(wait)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-w.notify:
			if abs, err := filepath.Abs(p); err == nil && w.wanted(abs) {
				changed(abs, true)
			}
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			for _, p := range w.handle(ev) {
				changed(p, false)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: rebuild to be safe.
				changed("", false)
				continue
			}
			w.cfg.Logger.Warn("file watcher error", "root", w.root, "err", err)
		case <-quiet.C:
			if !armed {
				continue
			}
			paths := make([]string, 0, len(pending))
			for p := range pending {
				paths = append(paths, p)
			}
			slices.Sort(paths)
			clear(pending)
			armed = false
			lastFire = time.Now()
			if w.onChange != nil {
				w.onChange(paths)
			}
		}
	}
}

// handle returns the wanted files an event changed.
func (w *Watcher) handle(ev fsnotify.Event) []string {
	if ev.Op == fsnotify.Chmod {
		return nil
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if w.dirs[ev.Name] {
			// A directory moved away or deleted: whatever Go files it held
			// are gone from the build, though no event names them.
			w.forgetTree(ev.Name)
			return []string{ev.Name}
		}
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			if w.skipDir(ev.Name) {
				return nil
			}
			// Files may have landed in the new directory before its watch
			// was added (git checkout, mkdir -p && cp): count them now.
			files, err := w.addTree(ev.Name)
			if err != nil {
				w.cfg.Logger.Warn("watch new directory", "dir", ev.Name, "err", err)
			}
			return files
		}
	}
	if w.wanted(ev.Name) {
		return []string{ev.Name}
	}
	return nil
}

// addTree watches dir and its subdirectories and returns the wanted files
// already in them.
func (w *Watcher) addTree(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while we walked
			}
			return err
		}
		if !d.IsDir() {
			if w.wanted(p) {
				files = append(files, p)
			}
			return nil
		}
		if p != dir && w.skipDir(p) {
			return filepath.SkipDir
		}
		if err := w.fsw.Add(p); err == nil {
			w.dirs[p] = true
		} else {
			if errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			if errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("watch %s: the system limit on watched directories is reached; raise fs.inotify.max_user_watches (sysctl) or watch a smaller directory: %w", p, err)
			}
			return fmt.Errorf("watch %s: %w", p, err)
		}
		return nil
	})
	return files, err
}

// forgetTree drops the watches of a directory that left the tree. inotify
// would otherwise follow a moved directory and report its files under
// their old names.
func (w *Watcher) forgetTree(dir string) {
	for d := range w.dirs {
		if d == dir || strings.HasPrefix(d, dir+string(filepath.Separator)) {
			delete(w.dirs, d)
			w.fsw.Remove(d) // already gone for a deleted directory
		}
	}
}

func (w *Watcher) skipDir(p string) bool {
	name := filepath.Base(p)
	if strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules" {
		return true
	}
	for _, ig := range w.ignore {
		if p == ig || strings.HasPrefix(p, ig+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// wanted reports whether a change to file p should trigger.
func (w *Watcher) wanted(p string) bool {
	rel, err := filepath.Rel(w.root, p)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return false
	}
	rel = filepath.ToSlash(rel)
	name := path.Base(rel)
	if editorTemp(name) {
		return false
	}
	dirs := strings.Split(rel, "/")
	for i := range dirs[:len(dirs)-1] {
		if w.skipDir(filepath.Join(w.root, filepath.FromSlash(strings.Join(dirs[:i+1], "/")))) {
			return false
		}
	}
	for _, pat := range w.cfg.Patterns {
		if Match(pat, rel) {
			return true
		}
	}
	return false
}

// editorTemp recognises the scratch files editors write while saving.
func editorTemp(name string) bool {
	return strings.HasSuffix(name, "~") || // vim, emacs backups
		strings.HasPrefix(name, ".#") || // emacs locks
		(strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) || // emacs autosave
		strings.HasSuffix(name, ".swp") || strings.HasSuffix(name, ".swx") || strings.HasSuffix(name, ".swo") ||
		name == "4913" || // vim's write-permission probe
		strings.HasSuffix(name, ".tmp") ||
		strings.Contains(name, "___jb_") // JetBrains safe write
}

// Match reports whether the slash-separated relative path rel matches
// pattern: a pattern without '/' matches the base name at any depth; "**"
// as a whole segment matches any number of directories.
func Match(pattern, rel string) bool {
	if !strings.Contains(pattern, "/") {
		ok, _ := path.Match(pattern, path.Base(rel))
		return ok
	}
	return matchSegments(strings.Split(pattern, "/"), strings.Split(rel, "/"))
}

func matchSegments(pat, parts []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(parts); i++ {
				if matchSegments(pat[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], parts[0]); !ok {
			return false
		}
		pat, parts = pat[1:], parts[1:]
	}
	return len(parts) == 0
}
