package querylog

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var when = time.Date(2026, 11, 22, 15, 37, 37, 123456789, time.FixedZone("CET", 3600))

// TestLine checks each field of the JSON line against SPEC.md's example
// and the odd cases: escapes in names, unknown types and rcodes, IPv6.
func TestLine(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
		want  map[string]any
	}{
		{"spec example", Entry{Time: when, Client: netip.MustParseAddr("10.1.2.0"), Group: "default", Name: "www.tiktok.com.",
			Type: dns.TypeA, Action: "blocked", App: "tiktok", Rule: "tiktok.com", Rcode: dns.RcodeNameError, Duration: 50 * time.Microsecond},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "10.1.2.0", "group": "default", "name": "www.tiktok.com",
				"type": "A", "action": "blocked", "app": "tiktok", "rule": "tiktok.com", "rcode": "NXDOMAIN", "duration_ms": 0.05}},
		{"canonical name, IPv6, no app", Entry{Time: when, Client: netip.MustParseAddr("2001:db8::1"), Group: "lab", Name: "WWW.Example.ORG.",
			Type: dns.TypeHTTPS, Action: "resolved", Rcode: dns.RcodeServerFailure, Duration: 1234567 * time.Nanosecond},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "2001:db8::1", "group": "lab", "name": "www.example.org",
				"type": "HTTPS", "action": "resolved", "app": "", "rule": "", "rcode": "SERVFAIL", "duration_ms": 1.235}},
		{"escapes and unknown codes", Entry{Time: when, Client: netip.MustParseAddr("127.0.0.1"), Group: "default", Name: `a\"b\\c\009.test.`,
			Type: 65280, Action: "resolved", Rcode: 3841},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "127.0.0.1", "group": "default", "name": `a"b\092c\009.test`,
				"type": "TYPE65280", "action": "resolved", "app": "", "rule": "", "rcode": "RCODE3841", "duration_ms": 0.0}},
		{"found through the answer", Entry{Time: when, Client: netip.MustParseAddr("10.1.2.0"), Group: "default", Name: "www.example.test.",
			Type: dns.TypeA, Action: "blocked", App: "tiktok", Rule: "tiktokv.com", Via: "cname", Found: "tiktokv.com.edgekey.net",
			Rcode: dns.RcodeNameError, Duration: 50 * time.Microsecond},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "10.1.2.0", "group": "default", "name": "www.example.test",
				"type": "A", "action": "blocked", "app": "tiktok", "rule": "tiktokv.com", "via": "cname", "found": "tiktokv.com.edgekey.net",
				"rcode": "NXDOMAIN", "duration_ms": 0.05}},
		{"encrypted transport with identity", Entry{Time: when, Client: netip.MustParseAddr("10.1.2.3"), Transport: "doh", ClientID: "phone-17",
			Cert: "phone-17.devices.example", Group: "investigators", Name: "www.tiktok.com.", Type: dns.TypeAAAA, Action: "allowed", App: "tiktok",
			Rule: "tiktok.com", Rcode: dns.RcodeSuccess, Duration: 2 * time.Millisecond},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "10.1.2.3", "transport": "doh", "client_id": "phone-17",
				"cert": "phone-17.devices.example", "group": "investigators", "name": "www.tiktok.com", "type": "AAAA", "action": "allowed",
				"app": "tiktok", "rule": "tiktok.com", "rcode": "NOERROR", "duration_ms": 2.0}},
		{"no question", Entry{Time: when, Client: netip.MustParseAddr("127.0.0.1"), Group: "default", Action: "resolved", Rcode: dns.RcodeFormatError},
			map[string]any{"time": "2026-11-22T14:37:37.123Z", "client": "127.0.0.1", "group": "default", "name": "",
				"type": "", "action": "resolved", "app": "", "rule": "", "rcode": "FORMERR", "duration_ms": 0.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf, Options{})
			l.Log(tt.entry)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			text := buf.String()
			if strings.Count(text, "\n") != 1 || !strings.HasSuffix(text, "\n") {
				t.Fatalf("want one line, got %q", text)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(text), &got); err != nil {
				t.Fatalf("%q: %v", text, err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("fields %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			// The fields come in SPEC.md's order.
			if !strings.HasPrefix(text, `{"time":`) || !strings.Contains(text, `"rcode":`) ||
				strings.Index(text, `"client"`) > strings.Index(text, `"name"`) {
				t.Errorf("field order: %s", text)
			}
		})
	}
}

func TestAnonymize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.1.2.3", "10.1.2.0"},
		{"192.168.77.255", "192.168.77.0"},
		{"2001:db8:abcd:12::1", "2001:db8:abcd::"},
		{"fd00:20:30:40:50:60:70:80", "fd00:20:30::"},
		{"::1", "::"},
	}
	for _, tt := range tests {
		if got := Anonymize(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("Anonymize(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// blockingWriter blocks every Write until released, and says when the
// first Write has started.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// counter counts like a prometheus.Counter.
type counter struct{ n atomic.Int64 }

func (c *counter) Add(v float64) { c.n.Add(int64(v)) }

// TestDropWhenWriterBlocks: while the writer is stuck, Log keeps returning
// at once; the buffer holds exactly Buffer entries and every further one is
// dropped and counted.
func TestDropWhenWriterBlocks(t *testing.T) {
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	var dropped counter
	l := New(w, Options{Buffer: 4, Dropped: &dropped})
	e := Entry{Time: when, Client: netip.MustParseAddr("127.0.0.1"), Name: "www.tiktok.com.", Action: "blocked"}
	l.Log(e) // taken by the writer goroutine, which then blocks in Write
	<-w.started
	start := time.Now()
	for range 4 + 10 {
		l.Log(e)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Log blocked for %s", took)
	}
	if l.Dropped() != 10 || dropped.n.Load() != 10 {
		t.Errorf("dropped %d (counter %d), want 10", l.Dropped(), dropped.n.Load())
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(w.buf.String(), "\n"); n != 5 {
		t.Errorf("%d lines written, want 5 (one being written, four buffered)", n)
	}
	l.Log(e) // after Close: dropped, no panic
	if l.Dropped() != 11 {
		t.Errorf("after Close: dropped %d, want 11", l.Dropped())
	}
}

// failingWriter fails while fail is set.
type failingWriter struct {
	fail atomic.Bool
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail.Load() {
		return 0, errors.New("disk full")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestWriteErrors: lines that cannot be written are counted as dropped,
// and writing resumes when the writer works again.
func TestWriteErrors(t *testing.T) {
	w := &failingWriter{}
	w.fail.Store(true)
	var dropped counter
	l := New(w, Options{Buffer: 16, Dropped: &dropped})
	e := Entry{Time: when, Name: "a.test.", Action: "blocked"}
	for range 3 {
		l.Log(e)
	}
	waitFor(t, func() bool { return l.Dropped() == 3 })
	w.fail.Store(false)
	l.Log(e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(w.buf.String(), "\n"); n != 1 || dropped.n.Load() != 3 {
		t.Errorf("%d lines written, %d dropped; want 1 and 3", n, dropped.n.Load())
	}
}

// TestReopen: after logrotate renames the file, Reopen makes the logger
// write to a new file at the configured path; nothing is lost.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "query.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(Entry{Time: when, Name: "before.test.", Action: "blocked"})
	waitFor(t, func() bool { return fileLines(t, path) == 1 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Log(Entry{Time: when, Name: "queued.test.", Action: "blocked"})
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Log(Entry{Time: when, Name: "after.test.", Action: "blocked"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"before.test"`) || !strings.Contains(string(old), `"queued.test"`) || strings.Count(string(old), "\n") != 2 {
		t.Errorf("rotated file:\n%s", old)
	}
	if !strings.Contains(string(cur), `"after.test"`) || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file:\n%s", cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file mode: %v %v, want 0640", fi.Mode(), err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close: no error")
	}
}

func TestOpenError(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "query.log"), Options{})
	if err == nil || !strings.Contains(err.Error(), "query log") {
		t.Errorf("Open in a missing directory: %v, want a query log error", err)
	}
}

func TestCheckPath(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "query.log")
	if err := os.WriteFile(existing, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		wantErr string
	}{
		{path: ""},
		{path: "-"},
		{path: existing},
		{path: filepath.Join(dir, "new.log")},
		{path: dir, wantErr: "is a directory"},
		{path: filepath.Join(dir, "missing", "query.log"), wantErr: "directory"},
		{path: filepath.Join(existing, "query.log"), wantErr: "not a directory"},
	}
	for _, tt := range tests {
		err := CheckPath(tt.path)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckPath(%q) = %v, want error %q", tt.path, err, tt.wantErr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckPath created the file: %v", err)
	}
}

func fileLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkLog is the cost on the query path: queueing one entry.
func BenchmarkLog(b *testing.B) {
	l := New(discard{}, Options{Buffer: 1 << 16})
	defer l.Close()
	e := Entry{Time: when, Client: netip.MustParseAddr("10.1.2.3"), Group: "default", Name: "www.tiktok.com.",
		Type: dns.TypeA, Action: "blocked", App: "tiktok", Rule: "tiktok.com", Rcode: dns.RcodeNameError, Duration: 50 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}

// BenchmarkLine is the writer's cost per line: formatting and encoding.
func BenchmarkLine(b *testing.B) {
	e := Entry{Time: when, Client: netip.MustParseAddr("10.1.2.3"), Group: "default", Name: "www.tiktok.com.",
		Type: dns.TypeA, Action: "blocked", App: "tiktok", Rule: "tiktok.com", Rcode: dns.RcodeNameError, Duration: 50 * time.Microsecond}
	enc := json.NewEncoder(discard{})
	b.ReportAllocs()
	for b.Loop() {
		ln := e.line()
		enc.Encode(&ln)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
