// Package dnstap sends AppFence's queries to a dnstap collector: each
// client query and its answer as CLIENT_QUERY and CLIENT_RESPONSE
// messages, each upstream exchange as FORWARDER_QUERY and
// FORWARDER_RESPONSE, in Frame Streams over a Unix or TCP socket (the
// protocol of Unbound, BIND, Knot and CoreDNS, which Vector,
// go-dnscollector and fstrm_capture receive). The decision on a client
// query (group, app, action, rule, client_id) is JSON in the dnstap
// message's extra field.
//
// The package owns the connection to the collector and the goroutine that
// writes to it. Answering never waits for the collector: Writer.Send only
// puts the message in a bounded buffer, and drops and counts it when the
// buffer is full, because the collector is down, slow or stalled. Every
// write has a deadline, so a collector that stops reading costs a
// reconnection, not a blocked writer; the connection is retried with
// exponential backoff.
//
// It owns the dnstap framing and the connection to the collector. It
// imports no AppFence package.
package dnstap

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// Target is where frames go: a Unix socket or a TCP address.
type Target struct {
	Network string // "unix" or "tcp"
	Address string // the socket's path, or host:port
}

func (t Target) String() string { return t.Network + ":" + t.Address }

// ParseTarget parses the form of [log] dnstap: "unix:/path/to.sock" or
// "tcp:host:port".
func ParseTarget(s string) (Target, error) {
	network, addr, ok := strings.Cut(s, ":")
	if !ok || addr == "" {
		return Target{}, fmt.Errorf("%q: write unix:/path/to.sock or tcp:host:port", s)
	}
	switch network {
	case "unix":
		if !strings.HasPrefix(addr, "/") {
			return Target{}, fmt.Errorf("%q: the socket path must be absolute", s)
		}
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return Target{}, fmt.Errorf("%q: write tcp:host:port", s)
		}
	default:
		return Target{}, fmt.Errorf("%q: the scheme must be unix: or tcp:", s)
	}
	return Target{Network: network, Address: addr}, nil
}

// Kind is what exchange a Message records.
type Kind uint8

const (
	// Client is a client's query and AppFence's answer.
	Client Kind = iota
	// Forwarder is a query AppFence sent upstream and the upstream's answer.
	Forwarder
)

// Message is one exchange: a query and its response. Each is given either
// packed (Query, Response, which the Writer keeps: the caller must not
// reuse them) or as a dns.Msg that nothing changes any more, packed by the
// writer goroutine (QueryMsg, ResponseMsg).
type Message struct {
	Kind Kind
	// Transport is how the query came: "udp", "tcp", "dot", "doh" or
	// "doq" (for Forwarder, empty: the upstream's transport is not known).
	Transport string
	// Client is who asked (for Forwarder, unset); Server is where it was
	// asked, AppFence's address (for Forwarder, the upstream's, when known).
	Client, Server netip.AddrPort
	QueryTime      time.Time
	ResponseTime   time.Time
	Query          []byte
	QueryMsg       *dns.Msg
	Response       []byte // nil with ResponseMsg nil: no response (Forwarder, failed)
	ResponseMsg    *dns.Msg
	// Decision goes to the extra field of both messages of a Client
	// exchange.
	Decision Decision
}

// Decision is the policy's decision on a client query, as the extra field
// carries it (JSON; empty fields omitted).
type Decision struct {
	Group     string `json:"group,omitempty"`
	App       string `json:"app,omitempty"`
	Action    string `json:"action,omitempty"`
	Rule      string `json:"rule,omitempty"`
	Via       string `json:"via,omitempty"`
	Found     string `json:"found,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Cert      string `json:"cert,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// Counter counts; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

// Gauge is set; a prometheus.Gauge is one.
type Gauge interface{ Set(float64) }

// Options tune a Writer.
type Options struct {
	// Identity is the dnstap identity field; "" is the host name.
	Identity string
	// Version is the dnstap version field.
	Version string
	// Buffer is how many messages wait for the collector before new ones
	// are dropped; 0 means DefaultBuffer.
	Buffer int
	// Timeout bounds connecting, the Frame Streams handshake and each
	// write; 0 means DefaultTimeout.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection attempts,
	// doubled after each failure; 0 means DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Dropped counts messages (exchanges) dropped; Sent counts those
	// written; Connected is 1 while connected to the collector. Each may
	// be nil.
	Dropped, Sent Counter
	Connected     Gauge
	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

// Defaults of Options.
const (
	DefaultBuffer     = 8192
	DefaultTimeout    = 2 * time.Second
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Writer sends Messages to a collector from a bounded buffer.
type Writer struct {
	target   Target
	opts     Options
	identity []byte
	version  []byte
	msgs     chan Message
	quit     chan struct{}
	done     chan struct{}

	closed    atomic.Bool
	dropped   atomic.Uint64
	sent      atomic.Uint64
	connected atomic.Bool
	closeOnce sync.Once
}

// New returns a Writer sending to target (the form of ParseTarget). It
// connects in the background: a collector that is not there yet is no
// error.
func New(target string, opts Options) (*Writer, error) {
	t, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Identity == "" {
		opts.Identity, _ = os.Hostname()
	}
	w := &Writer{
		target:   t,
		opts:     opts,
		identity: []byte(opts.Identity),
		version:  []byte(opts.Version),
		msgs:     make(chan Message, opts.Buffer),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if opts.Connected != nil {
		opts.Connected.Set(0)
	}
	go w.run()
	return w, nil
}

// Target returns the target as given to New, in canonical form.
func (w *Writer) Target() string { return w.target.String() }

// Send queues m. It never blocks: when the buffer is full, or the Writer is
// closed, m is dropped and counted.
func (w *Writer) Send(m *Message) {
	if !w.closed.Load() {
		select {
		case w.msgs <- *m:
			return
		default:
		}
	}
	w.drop(1)
}

// Dropped returns the number of messages dropped so far.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Sent returns the number of messages written to the collector so far.
func (w *Writer) Sent() uint64 { return w.sent.Load() }

// Connected reports whether the Writer is connected to the collector.
func (w *Writer) Connected() bool { return w.connected.Load() }

func (w *Writer) drop(n int) {
	if n == 0 {
		return
	}
	w.dropped.Add(uint64(n))
	if w.opts.Dropped != nil {
		w.opts.Dropped.Add(float64(n))
	}
}

func (w *Writer) setConnected(up bool) {
	w.connected.Store(up)
	if w.opts.Connected != nil {
		v := 0.0
		if up {
			v = 1
		}
		w.opts.Connected.Set(v)
	}
}

// Close sends what is queued when connected (within the write timeout),
// ends the stream and closes the connection. Messages sent after Close are
// dropped.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		close(w.quit)
	})
	<-w.done
	return nil
}

// run is the writer goroutine: connect, stream until a write fails or
// Close, and reconnect after a backoff.
func (w *Writer) run() {
	defer close(w.done)
	backoff := w.opts.MinBackoff
	failing := false // since the last connection: log the first failure only
	for {
		conn, fw, err := w.connect()
		if err != nil {
			if !failing {
				w.opts.Log.Warn("dnstap: cannot reach the collector; messages are buffered, then dropped, until it can be reached",
					"target", w.target.String(), "err", err)
				failing = true
			} else {
				w.opts.Log.Debug("dnstap: connect", "target", w.target.String(), "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-w.quit:
				t.Stop()
				w.drop(len(w.msgs))
				return
			}
			backoff = min(2*backoff, w.opts.MaxBackoff)
			continue
		}
		backoff, failing = w.opts.MinBackoff, false
		w.setConnected(true)
		w.opts.Log.Info("dnstap: connected", "target", w.target.String())
		err = w.stream(conn, fw)
		w.setConnected(false)
		conn.Close()
		if err == nil {
			return
		}
		w.opts.Log.Warn("dnstap: write failed; reconnecting", "target", w.target.String(), "err", err)
		failing = true
	}
}

// connect dials the collector and makes the Frame Streams handshake
// (bidirectional: READY, ACCEPT, START), each step within the timeout.
func (w *Writer) connect() (net.Conn, *framestream.Writer, error) {
	d := net.Dialer{Timeout: w.opts.Timeout}
	conn, err := d.Dial(w.target.Network, w.target.Address)
	if err != nil {
		return nil, nil, err
	}
	fw, err := framestream.NewWriter(conn, &framestream.WriterOptions{
		ContentTypes:  [][]byte{dnstap.FSContentType},
		Bidirectional: true,
		Timeout:       w.opts.Timeout,
	})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("frame streams handshake: %w", err)
	}
	return conn, fw, nil
}

// stream writes queued messages to fw, flushing whenever the buffer runs
// empty. It returns nil after Close (the queue written and the stream
// ended), or the error of a failed write; the messages not known to have
// reached the collector are counted as dropped.
func (w *Writer) stream(conn net.Conn, fw *framestream.Writer) error {
	var enc encoder
	pending := 0 // messages written to fw since the last flush
	flush := func() error {
		if err := fw.Flush(); err != nil {
			w.drop(pending)
			pending = 0
			return err
		}
		w.sent.Add(uint64(pending))
		if w.opts.Sent != nil && pending > 0 {
			w.opts.Sent.Add(float64(pending))
		}
		pending = 0
		return nil
	}
	write := func(m *Message) error {
		if err := enc.write(fw, w, m); err != nil {
			w.drop(pending + 1)
			pending = 0
			return err
		}
		pending++
		return nil
	}
	for {
		select {
		case m := <-w.msgs:
			if err := write(&m); err != nil {
				return err
			}
			if len(w.msgs) == 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-w.quit:
			for len(w.msgs) > 0 {
				m := <-w.msgs
				if err := write(&m); err != nil {
					w.drop(len(w.msgs))
					return nil
				}
			}
			if flush() == nil {
				fw.Close() // STOP, and FINISH within the timeout
			}
			return nil
		}
	}
}

// encoder builds the frames of messages; one per stream, reused.
type encoder struct {
	buf   []byte
	tap   dnstap.Dnstap
	msg   dnstap.Message
	extra []byte
}

// write writes the two frames of m: the query and the response (the
// response of a failed upstream exchange is left out).
func (e *encoder) write(fw *framestream.Writer, w *Writer, m *Message) error {
	query, resp := m.Query, m.Response
	if query == nil && m.QueryMsg != nil {
		var err error
		if query, err = m.QueryMsg.Pack(); err != nil {
			return nil // not a message the collector could read: skip it
		}
	}
	if resp == nil && m.ResponseMsg != nil {
		resp, _ = m.ResponseMsg.Pack()
	}
	e.extra = e.extra[:0]
	if m.Kind == Client {
		d := m.Decision
		d.Transport = m.Transport
		if b, err := json.Marshal(&d); err == nil {
			e.extra = b
		}
	}
	qt, rt := dnstap.Message_CLIENT_QUERY, dnstap.Message_CLIENT_RESPONSE
	if m.Kind == Forwarder {
		qt, rt = dnstap.Message_FORWARDER_QUERY, dnstap.Message_FORWARDER_RESPONSE
	}
	if err := e.frame(fw, w, m, qt, query, nil); err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	return e.frame(fw, w, m, rt, query, resp)
}

// frame writes one dnstap message: a query (resp nil) or a response, which
// carries the query's time as well as its own.
func (e *encoder) frame(fw *framestream.Writer, w *Writer, m *Message, typ dnstap.Message_Type, query, resp []byte) error {
	e.msg = dnstap.Message{Type: &typ}
	fillAddrs(&e.msg, m)
	if p, ok := protocols[m.Transport]; ok {
		e.msg.SocketProtocol = &p
	}
	qs, qns := unixTime(m.QueryTime)
	e.msg.QueryTimeSec, e.msg.QueryTimeNsec = &qs, &qns
	if resp == nil {
		e.msg.QueryMessage = query
	} else {
		rs, rns := unixTime(m.ResponseTime)
		e.msg.ResponseTimeSec, e.msg.ResponseTimeNsec = &rs, &rns
		e.msg.ResponseMessage = resp
	}
	ty := dnstap.Dnstap_MESSAGE
	e.tap = dnstap.Dnstap{Identity: w.identity, Version: w.version, Type: &ty, Message: &e.msg}
	if len(e.extra) > 0 {
		e.tap.Extra = e.extra
	}
	var err error
	if e.buf, err = (proto.MarshalOptions{}).MarshalAppend(e.buf[:0], &e.tap); err != nil {
		return nil // cannot happen with the fields set here; skip the frame
	}
	_, err = fw.WriteFrame(e.buf)
	return err
}

// protocols maps a transport to dnstap's socket_protocol. DoQ is 7 in the
// current dnstap.proto; the golang-dnstap release in use predates it.
var protocols = map[string]dnstap.SocketProtocol{
	"udp": dnstap.SocketProtocol_UDP,
	"tcp": dnstap.SocketProtocol_TCP,
	"dot": dnstap.SocketProtocol_DOT,
	"doh": dnstap.SocketProtocol_DOH,
	"doq": dnstap.SocketProtocol(7),
}

// fillAddrs sets the family, addresses and ports of m: query_* is the
// client's side, response_* the server's.
func fillAddrs(dm *dnstap.Message, m *Message) {
	var fam dnstap.SocketFamily
	for _, ap := range []netip.AddrPort{m.Client, m.Server} {
		if ap.Addr().IsValid() {
			fam = dnstap.SocketFamily_INET
			if ap.Addr().Unmap().Is6() {
				fam = dnstap.SocketFamily_INET6
			}
			break
		}
	}
	if fam == 0 {
		return
	}
	dm.SocketFamily = &fam
	addr := func(ap netip.AddrPort) ([]byte, *uint32) {
		if !ap.Addr().IsValid() {
			return nil, nil
		}
		a := ap.Addr().Unmap()
		if fam == dnstap.SocketFamily_INET6 && a.Is4() {
			a = netip.AddrFrom16(a.As16())
		}
		port := uint32(ap.Port())
		return a.AsSlice(), &port
	}
	dm.QueryAddress, dm.QueryPort = addr(m.Client)
	dm.ResponseAddress, dm.ResponsePort = addr(m.Server)
}

func unixTime(t time.Time) (uint64, uint32) {
	if t.IsZero() {
		return 0, 0
	}
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// Check reports whether a collector answers at target now, within
// timeout: it connects and makes the Frame Streams handshake, then ends
// the stream. It is what `appfence check` warns with; a collector that is
// down is no configuration error, since frames are dropped until it is up.
func Check(target string, timeout time.Duration) error {
	t, err := ParseTarget(target)
	if err != nil {
		return err
	}
	w := &Writer{target: t, opts: Options{Timeout: timeout}}
	conn, fw, err := w.connect()
	if err != nil {
		return fmt.Errorf("no collector at %s: %w", t, err)
	}
	defer conn.Close()
	fw.Close()
	return nil
}
