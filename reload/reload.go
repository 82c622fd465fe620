// Package reload owns how a running AppFence changes its policy: it builds
// a new policy from the configuration file, the app definitions and the
// remote sources, validates it completely, and only then hands it over to
// be swapped in; queries in flight finish on the old one. Reloads come from
// SIGHUP, from a watcher of the config and list files (blocking.watch) and
// from completed downloads of remote sources; they run one at a time, so at
// most two policies are alive at once (the serving one and the one being
// built). A failed reload leaves the old policy serving, logs every error
// with file:line and sets the reload metrics; a successful one logs what
// changed per app and per group.
//
// It owns when and how a policy is rebuilt and checked; what is built
// from it is the Install callback's (internal/stack). It may import
// config, policy, blocklists, blocklists/remote and metrics; not the
// resolver nor internal/daemon.
package reload

import (
	"context"
	"errors"
	"hash/maphash"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/blocklists/remote"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
)

// Options configure a Reloader.
type Options struct {
	// Path is the configuration file; "" is the built-in configuration.
	Path string
	// Install makes p the serving policy: it builds what queries need from
	// p and swaps it in. When it fails, the old policy keeps serving.
	Install func(p *policy.Policy) error
	// Metrics receives the reload metrics; nil is none.
	Metrics *metrics.Metrics
	// Log receives what each reload did; nil discards it.
	Log *slog.Logger
	// Debounce is the watcher's quiet time; 0 is DefaultDebounce.
	Debounce time.Duration
	// Downloader fetches remote sources; nil is one with the defaults.
	Downloader *remote.Downloader
	// Reloading and Reloaded, when set, are called as each reload (not
	// Load) begins and ends, with its error: for sd_notify's RELOADING=1
	// and READY=1.
	Reloading func()
	Reloaded  func(err error)
	// Now is the clock of the reload metrics' timestamps; nil is time.Now.
	Now func() time.Time
}

// Reloader builds and installs policies, one at a time.
type Reloader struct {
	opts Options
	log  *slog.Logger
	seed maphash.Seed

	mu      sync.Mutex // held while a policy is built and installed
	current *policy.Policy
	digest  digest
	// inputs is the fingerprint of what current was built from; 0 after
	// a failed reload, so that the next successful one counts as a change.
	inputs  uint64
	watcher *Watcher
	fetcher *remote.Refresher

	pending  chan struct{}
	reasonMu sync.Mutex
	reasons  []string
}

// New returns a reloader; Load installs the first policy.
func New(opts Options) *Reloader {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Downloader == nil {
		opts.Downloader = &remote.Downloader{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reloader{opts: opts, log: opts.Log, seed: maphash.MakeSeed(), pending: make(chan struct{}, 1)}
}

// build loads the configuration and compiles a policy from it; remote
// sources are read from the config's cache directory.
func build(path string) (*policy.Policy, error) {
	cfg, err := policy.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return policy.Compile(cfg, Store(cfg))
}

// Store returns the store of remote sources of cfg.
func Store(cfg *config.Config) remote.Store { return remote.Store{Dir: cfg.Blocking.CacheDir} }

// Load builds the first policy and installs it.
func (r *Reloader) Load() (*policy.Policy, error) {
	cfg, err := policy.LoadConfig(r.opts.Path)
	if err != nil {
		return nil, err
	}
	return r.LoadConfig(cfg)
}

// LoadConfig is Load with the configuration at Options.Path already read
// (for the logger it configures): it builds the first policy from cfg and
// installs it.
func (r *Reloader) LoadConfig(cfg *config.Config) (*policy.Policy, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := policy.Compile(cfg, Store(cfg))
	if err == nil {
		err = r.opts.Install(p)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		r.log.Warn(w)
	}
	for _, e := range SourceProblems(p) {
		r.log.Error("list may have lost its rules", "err", e)
	}
	d := newDigest(p.Set, r.seed)
	r.installed(p, d, fingerprint(r.opts.Path, p, d, r.seed))
	return p, nil
}

// Reload builds a new policy and installs it. On any error the serving
// policy stays; the error is logged (each problem on its own line, with its
// file:line) and returned. reason says what asked for the reload.
func (r *Reloader) Reload(reason string) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Reloading != nil {
		r.opts.Reloading()
	}
	if r.opts.Reloaded != nil {
		defer func() { r.opts.Reloaded(err) }()
	}
	start := time.Now()
	p, err := build(r.opts.Path)
	if err == nil {
		err = r.guard(p)
	}
	if err == nil {
		err = r.opts.Install(p)
	}
	if err != nil {
		// Counted before it is logged: whoever reads the log line then
		// finds the metric already counted.
		if m := r.opts.Metrics; m != nil {
			m.Reloads.WithLabelValues("failure").Inc()
			m.LastReloadOK.Set(0)
		}
		problems := strings.Split(err.Error(), "\n")
		for _, line := range problems {
			r.log.Error("reload failed", "reason", reason, "err", line)
		}
		r.log.Error("reload failed: the previous policy keeps serving", "reason", reason, "problems", len(problems))
		if r.watcher != nil && r.current.Config.Blocking.Watch {
			// Watch for the files the load missed, so that making them
			// reloads again.
			files, globs := watched(r.opts.Path, r.current)
			r.watcher.Watch(append(files, missingFiles(err)...), globs)
		}
		r.inputs = 0
		return err
	}
	for _, w := range p.Warnings {
		r.log.Warn(w)
	}
	d := newDigest(p.Set, r.seed)
	changes := diff(r.current, p, r.digest, d)
	// A change of the files is counted once, however many reloads it
	// asked for (the watcher, then the SIGHUP of `systemctl reload`): the
	// reloads that find the files as they were count as "unchanged".
	fp := fingerprint(r.opts.Path, p, d, r.seed)
	result := "success"
	if fp == r.inputs {
		result = "unchanged"
	}
	if m := r.opts.Metrics; m != nil {
		m.Reloads.WithLabelValues(result).Inc()
	}
	r.installed(p, d, fp)
	changes.Log(r.log)
	r.log.Info("reloaded", "reason", reason, "took", time.Since(start).Round(time.Millisecond),
		"apps", len(p.Set.Apps), "groups", len(p.Groups), "changed", !changes.Empty(), "files_changed", result == "success")
	return nil
}

// guard refuses p when a blocking app would lose more of its rules than
// blocking.max_rule_loss allows (guard.go), counting it per app. r.mu is
// held.
func (r *Reloader) guard(p *policy.Policy) error {
	losses := ruleLoss(r.current, p)
	errs := make([]error, len(losses))
	for i, l := range losses {
		errs[i] = l
		if m := r.opts.Metrics; m != nil {
			m.ReloadRuleLoss.WithLabelValues(l.App).Inc()
		}
	}
	return errors.Join(errs...)
}

// installed records p as the serving policy, built from inputs of
// fingerprint fp: metrics, the files to watch and the remote sources to
// refresh. r.mu is held.
func (r *Reloader) installed(p *policy.Policy, d digest, fp uint64) {
	r.current, r.digest, r.inputs = p, d, fp
	if m := r.opts.Metrics; m != nil {
		m.LastReloadOK.Set(1)
		m.LastReloadTime.Set(float64(r.opts.Now().Unix()))
		m.BlocklistRules.Reset()
		for name, n := range p.Set.Rules {
			m.BlocklistRules.WithLabelValues(name).Set(float64(n))
		}
	}
	r.rearm(p)
}

// rearm points the watcher and the refresher, once Run started them, at
// the files and remote sources of p. r.mu is held.
func (r *Reloader) rearm(p *policy.Policy) {
	if r.watcher != nil {
		files, globs := watched(r.opts.Path, p)
		r.watcher.Watch(files, globs)
	}
	if r.fetcher != nil {
		r.fetcher.Track(Store(p.Config), remote.Sources(p.Set))
	}
}

// watched returns the files and globs to watch for p: none without
// blocking.watch.
func watched(path string, p *policy.Policy) (files, globs []string) {
	if !p.Config.Blocking.Watch {
		return nil, nil
	}
	if path != "" {
		files = append(files, path)
	}
	return append(files, p.Set.Files...), p.Config.Blocking.Lists
}

// missingFiles returns the paths of the files err says do not exist.
func missingFiles(err error) []string {
	var paths []string
	var walk func(error)
	walk = func(err error) {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(pe.Err, fs.ErrNotExist) {
			paths = append(paths, pe.Path)
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return paths
}

// Trigger asks for a reload as soon as the one running, if any, is done.
// Triggers that arrive while a reload is pending are merged into it.
func (r *Reloader) Trigger(reason string) {
	r.reasonMu.Lock()
	if len(r.reasons) < 10 {
		r.reasons = append(r.reasons, reason)
	}
	r.reasonMu.Unlock()
	select {
	case r.pending <- struct{}{}:
	default:
	}
}

func (r *Reloader) takeReasons() string {
	r.reasonMu.Lock()
	defer r.reasonMu.Unlock()
	s := strings.Join(r.reasons, "; ")
	r.reasons = r.reasons[:0]
	return s
}

// Run performs triggered reloads, watches the files of the serving policy
// (with blocking.watch) and refreshes its remote sources, until ctx is
// done. Load must have succeeded first.
func (r *Reloader) Run(ctx context.Context) error {
	r.mu.Lock()
	loaded := r.current != nil
	r.mu.Unlock()
	if !loaded {
		return errors.New("reload: Run before a successful Load")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	w, err := NewWatcher(r.opts.Debounce, r.log)
	if err != nil {
		r.log.Warn("watch: file watching is unavailable; reload with SIGHUP", "err", err)
	} else {
		wg.Go(func() {
			w.Run(ctx, func(names []string) { r.Trigger("changed: " + strings.Join(names, ", ")) })
		})
	}
	refresher := remote.NewRefresher(r.opts.Downloader, r.log, func(src blocklists.Source) {
		r.Trigger("downloaded: " + src.URL)
	})
	wg.Go(func() { refresher.Run(ctx) })

	r.mu.Lock()
	r.watcher, r.fetcher = w, refresher
	r.rearm(r.current)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.watcher, r.fetcher = nil, nil
		r.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.pending:
			r.Reload(r.takeReasons())
		}
	}
}
