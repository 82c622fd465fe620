package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appfence/appfence/blocklists"
)

// listServer is a loopback HTTP server of one list, with an ETag and a
// Last-Modified date, that answers conditional requests as a CDN does.
type listServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        string
	version     int
	etag        string
	modified    time.Time
	useETag     bool
	status      int           // when not 0, answer every request with it
	delay       time.Duration // before the body
	requests    atomic.Int64
	notModified atomic.Int64
	lastRequest http.Header
}

func newListServer(t *testing.T, body string) *listServer {
	s := &listServer{useETag: true}
	s.set(body)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) set(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
	s.version++
	s.etag = fmt.Sprintf(`"v%d"`, s.version)
	s.modified = time.Date(2026, 1, 1, 0, s.version, 0, 0, time.UTC)
}

func (s *listServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	body, etag, modified, status, delay, useETag := s.body, s.etag, s.modified, s.status, s.delay, s.useETag
	s.lastRequest = r.Header.Clone()
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, "<html>error</html>", status)
		return
	}
	if useETag {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
		if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !modified.After(t) {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if delay > 0 {
		w.(http.Flusher).Flush()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	io.WriteString(w, body)
}

func (s *listServer) header(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRequest.Get(key)
}

func source(url string) blocklists.Source {
	return blocklists.Source{URL: url, Format: blocklists.FormatHosts, Refresh: time.Hour}
}

// read returns the content of the store's copy of src.
func read(t *testing.T, st Store, src blocklists.Source) string {
	t.Helper()
	rc, err := st.Open(src)
	if err != nil {
		t.Fatalf("open copy: %v", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func TestFetchConditional(t *testing.T) {
	for _, useETag := range []bool{true, false} {
		t.Run(fmt.Sprintf("etag=%v", useETag), func(t *testing.T) {
			srv := newListServer(t, "0.0.0.0 a.test\n")
			srv.useETag = useETag
			st := Store{Dir: t.TempDir() + "/cache"}
			src := source(srv.URL + "/list.txt")
			d := &Downloader{UserAgent: "appfence-test"}
			if _, err := st.Open(src); err == nil {
				t.Fatal("a copy before any download")
			}
			changed, err := d.Fetch(context.Background(), st, src)
			if err != nil || !changed || read(t, st, src) != "0.0.0.0 a.test\n" {
				t.Fatalf("first download: changed=%v err=%v", changed, err)
			}
			if srv.header("User-Agent") != "appfence-test" {
				t.Errorf("User-Agent %q", srv.header("User-Agent"))
			}
			m, err := st.Meta(src.URL)
			if err != nil || m.Rules != 1 || m.Size != 15 || m.URL != src.URL {
				t.Errorf("meta %+v %v", m, err)
			}
			// the same content: the server answers 304
			changed, err = d.Fetch(context.Background(), st, src)
			if err != nil || changed || srv.notModified.Load() != 1 {
				t.Fatalf("second download: changed=%v err=%v, 304s=%d", changed, err, srv.notModified.Load())
			}
			if useETag && srv.header("If-None-Match") != `"v1"` || !useETag && srv.header("If-Modified-Since") == "" {
				t.Errorf("conditional headers: If-None-Match %q If-Modified-Since %q", srv.header("If-None-Match"), srv.header("If-Modified-Since"))
			}
			// new content
			srv.set("0.0.0.0 a.test b.test\n")
			changed, err = d.Fetch(context.Background(), st, src)
			if err != nil || !changed || read(t, st, src) != "0.0.0.0 a.test b.test\n" {
				t.Fatalf("third download: changed=%v err=%v", changed, err)
			}
		})
	}
}

// TestFetchKeepsTheLastGoodCopy: every kind of failed download leaves the
// copy as it was.
func TestFetchKeepsTheLastGoodCopy(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*listServer, *Downloader)
		want  string
	}{
		{"not found", func(s *listServer, d *Downloader) { s.status = http.StatusNotFound }, "HTTP 404"},
		{"server error", func(s *listServer, d *Downloader) { s.status = http.StatusBadGateway }, "HTTP 502"},
		{"too large", func(s *listServer, d *Downloader) { s.set(strings.Repeat("0.0.0.0 x.test\n", 100)); d.MaxSize = 1000 }, "limit of 1000"},
		{"timeout", func(s *listServer, d *Downloader) {
			s.set("0.0.0.0 slow.test\n")
			s.delay = 5 * time.Second
			d.Timeout = 300 * time.Millisecond
		}, "deadline exceeded"},
		{"not a list", func(s *listServer, d *Downloader) { s.set("<html><body>maintenance</body></html>\n") }, "no hosts rule in 1 lines"},
		{"empty", func(s *listServer, d *Downloader) { s.set("") }, "no hosts rule in 0 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newListServer(t, "0.0.0.0 good.test\n")
			st := Store{Dir: t.TempDir()}
			src := source(srv.URL)
			d := &Downloader{}
			if _, err := d.Fetch(context.Background(), st, src); err != nil {
				t.Fatal(err)
			}
			before, _ := st.Meta(src.URL)
			tt.setup(srv, d)
			start := time.Now()
			changed, err := d.Fetch(context.Background(), st, src)
			if err == nil || changed || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), src.URL) {
				t.Errorf("changed=%v err=%v, want an error naming the URL and %q", changed, err, tt.want)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the failed download took %s", took)
			}
			if got := read(t, st, src); got != "0.0.0.0 good.test\n" {
				t.Errorf("copy now %q", got)
			}
			if after, _ := st.Meta(src.URL); after != before {
				t.Errorf("meta changed: %+v -> %+v", before, after)
			}
		})
	}
}

func TestRefresher(t *testing.T) {
	srv := newListServer(t, "0.0.0.0 one.test\n")
	st := Store{Dir: t.TempDir()}
	changes := make(chan string, 10)
	r := NewRefresher(&Downloader{}, nil, func(src blocklists.Source) { changes <- src.URL })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	src := source(srv.URL + "/a")
	src.Refresh = 200 * time.Millisecond
	r.Track(st, []blocklists.Source{src})
	wait := func(what string) {
		t.Helper()
		select {
		case u := <-changes:
			if u != src.URL {
				t.Errorf("change of %s", u)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change reported: %s", what)
		}
	}
	wait("the download at start")
	if read(t, st, src) != "0.0.0.0 one.test\n" {
		t.Error("copy not stored")
	}
	// unchanged content: conditional requests, no change reported
	deadline := time.Now().Add(5 * time.Second)
	for srv.notModified.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if srv.notModified.Load() < 2 || len(changes) != 0 {
		t.Fatalf("304s %d, changes %d: want refreshes without changes", srv.notModified.Load(), len(changes))
	}
	srv.set("0.0.0.0 one.test two.test\n")
	wait("new content")
	// untracked: no more requests
	r.Track(st, nil)
	time.Sleep(50 * time.Millisecond)
	n := srv.requests.Load()
	time.Sleep(500 * time.Millisecond)
	if got := srv.requests.Load(); got != n {
		t.Errorf("%d requests after the source was untracked", got-n)
	}
}

func TestSources(t *testing.T) {
	set := &blocklists.Set{Apps: []*blocklists.App{
		{Name: "a", Sources: []blocklists.Source{{URL: "http://x/1", Refresh: time.Hour}, {File: "/l.txt"}}},
		{Name: "b", Sources: []blocklists.Source{{URL: "http://x/1", Refresh: time.Minute}, {URL: "http://x/2", Refresh: time.Hour}}},
	}}
	got := Sources(set)
	if len(got) != 2 || got[0].URL != "http://x/1" || got[0].Refresh != time.Minute || got[1].URL != "http://x/2" {
		t.Errorf("Sources = %+v", got)
	}
}
