package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/appfence/appfence/blocklists"
)

// Download limits used when a Downloader leaves them zero.
const (
	DefaultMaxSize = 64 << 20 // bytes of one source, as sent (compressed or not)
	DefaultTimeout = time.Minute
)

// Downloader fetches remote sources into a Store.
type Downloader struct {
	// Client sends the requests; nil is a client of its own. Its own
	// timeout, if any, applies on top of Timeout.
	Client *http.Client
	// MaxSize bounds the size of one download; 0 is DefaultMaxSize.
	MaxSize int64
	// Timeout bounds one download, from the request to the last byte; 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Fetch downloads src into store with a conditional GET (If-None-Match,
// If-Modified-Since from the copy's Meta). It reports whether the store now
// holds new content. The new content replaces the copy only when it was
// read whole within the limits and parses with at least one rule; on any
// error the last good copy stays.
func (d *Downloader) Fetch(ctx context.Context, store Store, src blocklists.Source) (changed bool, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("download %s: %w", src.URL, err)
		}
	}()
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return false, err
	}
	if d.UserAgent != "" {
		req.Header.Set("User-Agent", d.UserAgent)
	}
	old, oldErr := store.Meta(src.URL)
	if oldErr == nil && fileExists(store.path(src.URL, ".list")) {
		if old.ETag != "" {
			req.Header.Set("If-None-Match", old.ETag)
		}
		if old.LastModified != "" {
			req.Header.Set("If-Modified-Since", old.LastModified)
		}
	}
	client := d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && oldErr == nil:
		old.Checked = time.Now()
		return false, store.writeMeta(old)
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("HTTP %s", resp.Status)
	}
	limit := d.MaxSize
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	if resp.ContentLength > limit {
		return false, fmt.Errorf("%d bytes, more than the limit of %d", resp.ContentLength, limit)
	}
	if err := os.MkdirAll(store.Dir, 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(store.Dir, ".download-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), io.LimitReader(resp.Body, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("more than the limit of %d bytes", limit)
	}
	if err != nil {
		tmp.Close()
		return false, err
	}
	rules, err := countRules(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	now := time.Now()
	m := Meta{
		URL: src.URL, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		SHA256: hexSum(sum), Size: n, Rules: rules, Downloaded: now, Checked: now,
	}
	if oldErr == nil && old.SHA256 == m.SHA256 && fileExists(store.path(src.URL, ".list")) {
		m.Downloaded = old.Downloaded // the same bytes again: keep the copy
		return false, store.writeMeta(m)
	}
	if err := rename(tmp.Name(), store.path(src.URL, ".list")); err != nil {
		return false, err
	}
	return true, store.writeMeta(m)
}

// countRules parses the downloaded file and fails when it holds no rule: an
// error page or an empty answer must not replace a good list.
func countRules(f *os.File, src blocklists.Source) (int, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	st, err := blocklists.ParseList(f, src.Format, src.URL, func(blocklists.Entry) {})
	if err != nil {
		return 0, err
	}
	if st.Rules == 0 {
		msg := fmt.Sprintf("no %s rule in %d lines", src.Format, st.Lines)
		if len(st.Errors) > 0 {
			msg += fmt.Sprintf(" (%v)", st.Errors[0])
		}
		return 0, errors.New(msg)
	}
	return st.Rules, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
