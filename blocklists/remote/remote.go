// Package remote keeps the remote sources of app definitions (sources with
// a url): a Downloader fetches them with conditional GET, a size limit and a
// timeout into a Store, a directory on disk; the Store opens the last good
// copy for blocklists.Load; a Refresher downloads every source at start and
// every refresh, in the background, and says when one brought new content.
//
// Loading a policy never waits for the network: it reads the Store. A
// download that fails, times out, is too large or holds no rule keeps the
// last good copy; a source never downloaded is reported by blocklists.Load
// and the rest of the policy serves.
//
// It owns the downloads and the on-disk copies of remote sources. It may
// import blocklists (for the formats), nothing that serves queries.
package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/appfence/appfence/blocklists"
)

// Store is a directory holding the last good copy of each remote source:
// KEY.list (the content as downloaded) and KEY.json (its Meta), where KEY
// is derived from the URL. Writes replace files by rename, so a reader
// sees the old copy or the new one, never half of one.
type Store struct {
	Dir string
}

// Meta describes the copy of a source in a Store.
type Meta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	SHA256       string    `json:"sha256"`
	Size         int64     `json:"size"`
	Rules        int       `json:"rules"`
	Downloaded   time.Time `json:"downloaded"` // when the content was last replaced
	Checked      time.Time `json:"checked"`    // when the server last confirmed it
}

// ErrNoCopy is returned by Open for a source never downloaded.
var ErrNoCopy = errors.New("not downloaded yet")

// Open implements blocklists.Fetcher: it opens the last good copy of src.
func (s Store) Open(src blocklists.Source) (io.ReadCloser, error) {
	f, err := os.Open(s.path(src.URL, ".list"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no copy in %s)", ErrNoCopy, s.Dir)
	}
	return f, err
}

// Meta returns what the store knows about the copy of url.
func (s Store) Meta(url string) (Meta, error) {
	var m Meta
	data, err := os.ReadFile(s.path(url, ".json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m, ErrNoCopy
		}
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", s.path(url, ".json"), err)
	}
	return m, nil
}

// path returns the file of url with the given extension.
func (s Store) path(url, ext string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(s.Dir, hex.EncodeToString(sum[:12])+ext)
}

// writeMeta replaces the meta file of m.URL.
func (s Store) writeMeta(m Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".meta-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return rename(tmp.Name(), s.path(m.URL, ".json"))
}

func rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		os.Remove(from)
		return err
	}
	return nil
}

// Sources returns the remote sources of a set, each URL once; a URL named
// twice keeps the shorter refresh.
func Sources(set *blocklists.Set) []blocklists.Source {
	var out []blocklists.Source
	idx := map[string]int{}
	for _, a := range set.Apps {
		for _, src := range a.Sources {
			if src.URL == "" {
				continue
			}
			if i, ok := idx[src.URL]; ok {
				out[i].Refresh = min(out[i].Refresh, src.Refresh)
				continue
			}
			idx[src.URL] = len(out)
			out = append(out, src)
		}
	}
	return out
}
