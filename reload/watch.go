package reload

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the watcher waits after the last change of a
// file before it reports: editors and `git checkout` touch several files,
// or one file several times, in a burst.
const DefaultDebounce = 500 * time.Millisecond

// Watcher reports changes of a set of files and of the files that glob
// patterns match. It watches directories, not files: editors save by
// writing a new file and renaming it over the old one, which ends a watch
// on the file itself, and a file newly matching a glob must be seen too.
// Symbolic links are followed: the link's target and its directory are
// watched as well (a Kubernetes ConfigMap swaps a link to a new folder).
type Watcher struct {
	fsw      *fsnotify.Watcher
	debounce time.Duration
	log      *slog.Logger

	mu    sync.Mutex
	files map[string]bool
	globs []string
	dirs  []string
}

// NewWatcher returns a watcher that reports a burst of changes debounce
// after its last event. log may be nil.
func NewWatcher(debounce time.Duration, log *slog.Logger) (*Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{fsw: fsw, debounce: debounce, log: log, files: map[string]bool{}}, nil
}

// Watch replaces what is watched: files (absolute or relative to the
// working directory) and glob patterns whose new matches count as changes.
func (w *Watcher) Watch(files, globs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files = map[string]bool{}
	var dirs []string
	addDir := func(d string) {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, f := range files {
		f = absClean(f)
		w.files[f] = true
		addDir(filepath.Dir(f))
		if t, err := filepath.EvalSymlinks(f); err == nil && t != f {
			t = absClean(t)
			w.files[t] = true
			addDir(filepath.Dir(t))
		}
	}
	w.globs = w.globs[:0]
	for _, g := range globs {
		g = absClean(g)
		w.globs = append(w.globs, g)
		dir := filepath.Dir(g)
		if !strings.ContainsAny(dir, `*?[\`) {
			addDir(dir)
			continue
		}
		// A wildcard in a directory: watch the directories it matches now.
		matches, _ := filepath.Glob(dir)
		for _, m := range matches {
			addDir(m)
		}
	}
	for _, d := range w.dirs {
		if !slices.Contains(dirs, d) {
			w.fsw.Remove(d)
		}
	}
	w.dirs = w.dirs[:0]
	for _, d := range dirs {
		// Adding a watched directory again is harmless, and restores the
		// watch when the directory was removed and made again.
		if err := w.fsw.Add(d); err != nil {
			level := slog.LevelWarn
			if errors.Is(err, fs.ErrNotExist) {
				level = slog.LevelDebug // e.g. the default glob's folder, unused
			}
			w.log.Log(context.Background(), level, "watch: cannot watch a directory; changes in it need a SIGHUP", "dir", d, "err", err)
			continue
		}
		w.dirs = append(w.dirs, d)
	}
}

// relevant reports whether a change of name matters.
func (w *Watcher) relevant(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	name = absClean(name)
	if w.files[name] {
		return true
	}
	for _, g := range w.globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Run watches until ctx is done and calls changed with the names changed in
// each burst. It closes the watcher when it returns.
func (w *Watcher) Run(ctx context.Context, changed func(names []string)) {
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pending []string
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			// A change of permissions or times alone (touch, backups) is
			// not a change of content.
			if ev.Op == fsnotify.Chmod || !w.relevant(ev.Name) {
				continue
			}
			w.log.Debug("watch: file changed", "file", ev.Name, "op", ev.Op.String())
			if !slices.Contains(pending, ev.Name) {
				pending = append(pending, ev.Name)
			}
			timer.Reset(w.debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("watch: error; a change may have been missed (send SIGHUP to reload)", "err", err)
		case <-timer.C:
			names := pending
			pending = nil
			changed(names)
		}
	}
}

func absClean(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}
