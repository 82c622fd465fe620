// Package querylog writes AppFence's query log: one JSON object per line
// for each logged query, to standard output or a file.
//
// Logging never slows answers. Logger.Log only puts the entry in a bounded
// buffer; a goroutine formats and writes the lines. When the buffer is full
// the entry is dropped and counted, and the query is answered as usual.
// Reopen closes and reopens the file, for logrotate (SIGUSR1 in serve).
//
// It owns the query log's format and its writer. It may import
// internal/dnsname and internal/dnswire; not metrics (the drop counter is
// passed in) nor policy (entries are plain values).
package querylog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnswire"

	"github.com/appfence/appfence/internal/dnsname"
)

// Entry is one query as the log records it. It holds values only, so that
// logging it costs no allocation; the writer formats it.
type Entry struct {
	Time   time.Time
	Client netip.Addr
	// Transport is how the query came: "udp", "tcp", "dot", "doh" or
	// "doq".
	Transport string
	// ClientID is the ClientID the client sent (DoT, DoH, DoQ), and Cert
	// the name of its verified client certificate (a DNS SAN, else its CN,
	// else "sha256:" and its hash); "" when there is none.
	ClientID string
	Cert     string
	Group    string
	// Name is the query name as received (presentation format); the line
	// has it in canonical form.
	Name   string
	Type   uint16
	Action string
	App    string
	Rule   string
	// Via is where the rule was found when not through the query name:
	// "canary", or in the upstream's answer "cname", "dname", "svcb" or
	// "ip"; Found is the name or address in the answer that matched.
	Via      string
	Found    string
	Rcode    int
	Duration time.Duration
}

// line is the JSON form of an Entry, in the order of SPEC.md; transport
// (always set by the resolver), client_id and cert when known; via and
// found (AppFence's addition) only when the rule was not found through the
// query name.
type line struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Transport  string  `json:"transport,omitempty"`
	ClientID   string  `json:"client_id,omitempty"`
	Cert       string  `json:"cert,omitempty"`
	Group      string  `json:"group"`
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Action     string  `json:"action"`
	App        string  `json:"app"`
	Rule       string  `json:"rule"`
	Via        string  `json:"via,omitempty"`
	Found      string  `json:"found,omitempty"`
	Rcode      string  `json:"rcode"`
	DurationMS float64 `json:"duration_ms"`
}

// timeFormat is RFC 3339 in UTC with milliseconds: 2026-11-22T14:37:37.123Z.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func (e *Entry) line() line {
	rcode := dnswire.RcodeName(e.Rcode)
	typ := ""
	if e.Name != "" || e.Type != 0 {
		typ = dns.Type(e.Type).String()
	}
	client := ""
	if e.Client.IsValid() {
		client = e.Client.String()
	}
	return line{
		Time:       e.Time.UTC().Format(timeFormat),
		Client:     client,
		Transport:  e.Transport,
		ClientID:   e.ClientID,
		Cert:       e.Cert,
		Group:      e.Group,
		Name:       dnsname.Canonical(e.Name),
		Type:       typ,
		Action:     e.Action,
		App:        e.App,
		Rule:       e.Rule,
		Via:        e.Via,
		Found:      e.Found,
		Rcode:      rcode,
		DurationMS: math.Round(float64(e.Duration)/1e3) / 1e3, // microsecond precision
	}
}

// Anonymize zeroes the host part of a client address: the last octet of an
// IPv4 address (/24), all but the first 48 bits of an IPv6 address.
func Anonymize(a netip.Addr) netip.Addr {
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// Counter is what the logger counts dropped lines with; a
// prometheus.Counter is one.
type Counter interface{ Add(float64) }

// Options tune a Logger.
type Options struct {
	// Buffer is how many entries wait for the writer before new ones are
	// dropped; 0 means DefaultBuffer.
	Buffer int
	// Dropped, if not nil, counts the entries dropped.
	Dropped Counter
	// Log receives write errors; nil discards them.
	Log *slog.Logger
}

// DefaultBuffer is the default number of buffered entries: about a second
// of a busy resolver's blocked queries, or a few milliseconds of all
// queries, and under a megabyte.
const DefaultBuffer = 8192

// Logger writes query log lines from a bounded buffer.
type Logger struct {
	path    string    // "-", a file path, or "" for a writer given to New
	w       io.Writer // where lines go: the file, standard output or the writer
	file    *os.File  // the open file, or nil; only the writer goroutine changes it
	out     *bufio.Writer
	entries chan Entry
	reopen  chan chan error
	quit    chan struct{}
	done    chan struct{}
	opts    Options

	closed    atomic.Bool
	dropped   atomic.Uint64
	closeOnce sync.Once
	failing   bool // the last write failed; only the writer goroutine uses it
}

// Open returns a logger writing to path: "-" is standard output, anything
// else a file, created if needed and appended to.
func Open(path string, opts Options) (*Logger, error) {
	if path == "-" {
		return start(os.Stdout, nil, path, opts), nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return start(f, f, path, opts), nil
}

// New returns a logger writing to w. Reopen does nothing for it.
func New(w io.Writer, opts Options) *Logger {
	return start(w, nil, "", opts)
}

func start(w io.Writer, f *os.File, path string, opts Options) *Logger {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		path:    path,
		w:       w,
		file:    f,
		out:     bufio.NewWriterSize(w, 64<<10),
		entries: make(chan Entry, opts.Buffer),
		reopen:  make(chan chan error),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		opts:    opts,
	}
	go l.run()
	return l
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("query log: %w", err)
	}
	return f, nil
}

// CheckPath reports whether a query log could be opened at path, without
// creating or changing anything: "" (off) and "-" (standard output) can
// always be; an existing file must open for writing, and a missing one
// needs a directory to be created in. It is what `appfence check` warns
// with: serve answers queries without a query log it cannot open.
func CheckPath(path string) error {
	if path == "" || path == "-" {
		return nil
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("query log: %s is a directory", path)
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("query log: %w", err)
		}
		return f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("query log: %w", err)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("query log: directory: %w", err)
	}
	if !di.IsDir() {
		return fmt.Errorf("query log: %s is not a directory", dir)
	}
	if err := syscall.Access(dir, accessWrite|accessExec); err != nil {
		return fmt.Errorf("query log: cannot create files in %s: %w", dir, err)
	}
	return nil
}

// access(2) modes.
const (
	accessWrite = 0x2
	accessExec  = 0x1
)

// Path returns the file the logger writes to, "-" for standard output, or
// "" for a writer given to New.
func (l *Logger) Path() string { return l.path }

// Log queues e for writing. It never blocks: when the buffer is full, or
// the logger is closed, e is dropped and counted.
func (l *Logger) Log(e Entry) {
	if !l.closed.Load() {
		select {
		case l.entries <- e:
			return
		default:
		}
	}
	l.drop(1)
}

// Dropped returns the number of entries dropped so far.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

func (l *Logger) drop(n int) {
	l.dropped.Add(uint64(n))
	if l.opts.Dropped != nil {
		l.opts.Dropped.Add(float64(n))
	}
}

// Reopen closes and reopens the log file, so that a file renamed by
// logrotate is released and a new one created. Lines queued before are
// written to the old file.
func (l *Logger) Reopen() error {
	if l.path == "" || l.path == "-" {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case l.reopen <- reply:
		return <-reply
	case <-l.done:
		return errors.New("query log: closed")
	}
}

// Close writes the entries queued so far, then closes the file. Entries
// logged after Close are dropped.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
	})
	<-l.done
	if l.file != nil {
		return l.file.Close()
	}
	return nil
}

// run is the writer goroutine: it formats entries and flushes whenever the
// buffer runs empty, so lines appear at once when the resolver is quiet
// and are written in batches when it is busy.
func (l *Logger) run() {
	defer close(l.done)
	enc := json.NewEncoder(l.out)
	enc.SetEscapeHTML(false)
	pending := 0 // lines in l.out not yet flushed
	write := func(e *Entry) {
		ln := e.line()
		enc.Encode(&ln) // errors surface at Flush
		pending++
	}
	drain := func() {
		for len(l.entries) > 0 {
			e := <-l.entries
			write(&e)
		}
		l.flush(&pending)
	}
	for {
		select {
		case e := <-l.entries:
			write(&e)
			if len(l.entries) == 0 {
				l.flush(&pending)
			}
		case reply := <-l.reopen:
			// Entries queued before Reopen was called belong to the old
			// file: select picks among ready cases at random.
			drain()
			reply <- l.reopenFile()
		case <-l.quit:
			drain()
			return
		}
	}
}

// flush writes the buffered lines. Lines lost to a write error are counted
// as dropped, and the error is logged once until writing works again.
func (l *Logger) flush(pending *int) {
	err := l.out.Flush()
	if err == nil {
		if l.failing {
			l.opts.Log.Info("query log: writing again", "path", l.path)
			l.failing = false
		}
		*pending = 0
		return
	}
	l.drop(*pending)
	*pending = 0
	if !l.failing {
		l.opts.Log.Error("query log: write failed; lines are dropped until it works again", "path", l.path, "err", err)
		l.failing = true
	}
	// bufio.Writer keeps its first error forever: start afresh.
	l.out.Reset(l.w)
}

func (l *Logger) reopenFile() error {
	f, err := openFile(l.path)
	if err != nil {
		return err // keep writing to the old file
	}
	l.file.Close()
	l.file, l.w = f, f
	l.out.Reset(f)
	return nil
}
