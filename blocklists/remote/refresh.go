package remote

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/appfence/appfence/blocklists"
)

// Retry delays after a failed download: the first retry after RetryMin,
// doubling up to the source's refresh.
const RetryMin = 30 * time.Second

// Refresher downloads the tracked sources in the background: each one as
// soon as it is tracked, then every refresh. Downloads run one at a time.
type Refresher struct {
	downloader *Downloader
	log        *slog.Logger
	changed    func(blocklists.Source)

	mu      sync.Mutex
	store   Store
	tracked map[string]*tracked // by URL
	wake    chan struct{}
}

type tracked struct {
	src   blocklists.Source
	next  time.Time
	retry time.Duration // the delay after the next failure
}

// NewRefresher returns a refresher that downloads with d and calls changed
// after each download that brought new content. log may be nil.
func NewRefresher(d *Downloader, log *slog.Logger, changed func(blocklists.Source)) *Refresher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Refresher{downloader: d, log: log, changed: changed, tracked: map[string]*tracked{}, wake: make(chan struct{}, 1)}
}

// Track makes srcs, kept in store, the sources to refresh. A new source (or
// every source, when the store changes) is downloaded at once; one tracked
// before keeps its schedule, with its refresh updated.
func (r *Refresher) Track(store Store, srcs []blocklists.Source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if store != r.store {
		r.store = store
		clear(r.tracked)
	}
	now := time.Now()
	next := make(map[string]*tracked, len(srcs))
	for _, src := range srcs {
		t, ok := r.tracked[src.URL]
		if !ok {
			t = &tracked{next: now, retry: RetryMin}
		} else if due := now.Add(src.Refresh); t.next.After(due) {
			t.next = due
		}
		t.src = src
		next[src.URL] = t
	}
	r.tracked = next
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run downloads tracked sources when they are due, until ctx is done.
func (r *Refresher) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour) // Reset needs no draining since Go 1.23
	defer timer.Stop()
	for {
		src, store, wait, ok := r.due()
		if ok {
			r.fetch(ctx, store, src)
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// due returns a source due now, or how long until the next one is due.
func (r *Refresher) due() (src blocklists.Source, store Store, wait time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	wait = time.Hour
	for _, t := range r.tracked {
		if d := t.next.Sub(now); d <= 0 {
			t.next = now.Add(t.src.Refresh) // rescheduled by fetch on failure
			return t.src, r.store, 0, true
		} else if d < wait {
			wait = d
		}
	}
	return src, r.store, wait, false
}

func (r *Refresher) fetch(ctx context.Context, store Store, src blocklists.Source) {
	changed, err := r.downloader.Fetch(ctx, store, src)
	r.mu.Lock()
	t, tracked := r.tracked[src.URL]
	if tracked && r.store == store {
		if err != nil {
			t.next = time.Now().Add(min(t.retry, src.Refresh))
			t.retry = min(2*t.retry, src.Refresh)
		} else {
			t.retry = RetryMin
		}
	}
	r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if m, merr := store.Meta(src.URL); merr == nil {
			r.log.Warn("remote source: download failed; the last good copy stays in use", "url", src.URL,
				"copy_downloaded", m.Downloaded.Format(time.RFC3339), "err", err)
		} else {
			r.log.Error("remote source: download failed and there is no copy: the source is not loaded", "url", src.URL, "err", err)
		}
		return
	}
	if changed {
		m, _ := store.Meta(src.URL)
		r.log.Info("remote source: downloaded new content", "url", src.URL, "bytes", m.Size, "rules", m.Rules)
		if r.changed != nil {
			r.changed(src)
		}
		return
	}
	r.log.Debug("remote source: unchanged", "url", src.URL)
}
