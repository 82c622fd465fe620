package resolver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/resolver/proxyproto"
)

var (
	errTooManyConnections = errors.New("over server.max_tcp_connections, none idle")
	errTooManyFromClient  = errors.New("over server.max_tcp_connections_per_client")
	errNotAllowed         = errors.New("TCP from a client outside server.allow_clients")
	errClosing            = errors.New("server shutting down")
)

// tcpConn is the server's record of one TCP connection, guarded by
// Server.mu but for idleSince and the fields under idleMu.
type tcpConn struct {
	conn   net.Conn
	client netip.Prefix // the client's address, or its /64 for IPv6
	// idleSince is when the connection became idle, waiting for its next
	// query with none being answered, in Unix nanoseconds; 0 while a query
	// is read or answered.
	idleSince atomic.Int64
	released  bool // its places are given back: it is closing

	idleMu  sync.Mutex // guards waiting and busy, and the stores to idleSince
	waiting bool       // the reader waits for a query
	busy    int        // queries being answered
}

// setWaiting records that the reader waits for a query (or not). The last
// reply was written at repliedAt (Unix nanoseconds; 0 for none): seen
// from the client, a connection is idle from its last reply, however
// late its reader gets back to waiting.
func (tc *tcpConn) setWaiting(w bool, repliedAt int64) {
	tc.idleMu.Lock()
	tc.waiting = w
	tc.updateIdle(repliedAt)
	tc.idleMu.Unlock()
}

// addBusy adds d to the queries being answered. A query's answer was
// written at repliedAt (Unix nanoseconds; 0 for now): when it was the last
// one being answered, the connection has been idle since then, however
// late the goroutine that answered it gets here.
func (tc *tcpConn) addBusy(d int, repliedAt int64) {
	tc.idleMu.Lock()
	tc.busy += d
	tc.updateIdle(repliedAt)
	tc.idleMu.Unlock()
}

// updateIdle sets idleSince from waiting and busy; a connection that
// becomes idle is idle since at, or now when at is 0. idleMu is held.
func (tc *tcpConn) updateIdle(at int64) {
	switch {
	case !tc.waiting || tc.busy > 0:
		tc.idleSince.Store(0)
	case tc.idleSince.Load() == 0:
		if at == 0 {
			at = time.Now().UnixNano()
		}
		tc.idleSince.Store(at)
	}
}

// clientKey is what the per-client bounds count by: an IPv4 address, or
// the /64 of an IPv6 address, which one host usually owns whole.
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// acceptTCP accepts connections on l until Shutdown. A client outside
// server.allow_clients is reset at once, before it takes a place: it would
// only get REFUSED, and must not deny TCP to the clients that are allowed.
// So is a client over server.max_tcp_connections_per_client. When
// server.max_tcp_connections are open, the one idle the longest is closed
// to make room (RFC 7766, 6.2.3); when none is idle, the new one is reset
// rather than left waiting in the kernel's backlog.
func (s *Server) acceptTCP(l net.Listener) {
	defer s.loops.Done()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.stopped.Load() {
				return
			}
			if retryable(err) { // out of file descriptors: wait, as net/http does
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			s.fail(err)
			return
		}
		backoff = 0
		client := clientAddr(c.RemoteAddr())
		if !s.handler.State().Policy.Allowed(client) {
			reset(c)
			s.drop(client, errNotAllowed)
			continue
		}
		// A balancer of server.tls.proxy_protocol speaks for many clients:
		// its connections are not bounded per client, and the client is
		// that of the PROXY header, read by the connection's goroutine.
		balancer := proxyproto.Trusted(s.settings().TLS.ProxyProtocol, client)
		if balancer {
			c = proxyproto.NewConn(c, s.settings().TCPIdleTimeout)
		}
		tc, err := s.admit(c, client, balancer)
		switch {
		case errors.Is(err, errClosing):
			c.Close()
			return
		case err != nil:
			reset(c)
			s.drop(client, err)
			continue
		}
		go s.serveTCPConn(tc, client)
	}
}

// admit gives c a place among the TCP connections, closing the connection
// idle the longest when all are taken. A balancer's connections are not
// bounded per client.
func (s *Server) admit(c net.Conn, client netip.Addr, balancer bool) (*tcpConn, error) {
	set := s.settings()
	key := clientKey(client)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errClosing
	}
	if !balancer && s.perClient[key] >= set.MaxTCPConnectionsPerClient {
		return nil, errTooManyFromClient
	}
	if s.tcpActive.Load() >= int64(set.MaxTCPConnections) {
		old := s.oldestIdle()
		if old == nil {
			return nil, errTooManyConnections
		}
		s.release(old)
		old.conn.SetReadDeadline(time.Unix(1, 0)) // its goroutine closes it
	}
	tc := &tcpConn{conn: c, client: key}
	s.conns[c] = tc
	s.perClient[key]++
	s.tcpActive.Add(1)
	s.serving.Add(1)
	return tc, nil
}

// oldestIdle returns the connection that has waited longest for a query,
// or nil when none waits. It scans every connection, which happens only
// when all places are taken. s.mu is held.
func (s *Server) oldestIdle() *tcpConn {
	var oldest *tcpConn
	var since int64
	for _, tc := range s.conns {
		t := tc.idleSince.Load()
		if t == 0 || tc.released {
			continue
		}
		if oldest == nil || t < since {
			oldest, since = tc, t
		}
	}
	return oldest
}

// release gives back tc's places, once. s.mu is held.
func (s *Server) release(tc *tcpConn) {
	if tc.released {
		return
	}
	tc.released = true
	s.tcpActive.Add(-1)
	if s.perClient[tc.client]--; s.perClient[tc.client] <= 0 {
		delete(s.perClient, tc.client)
	}
}

// reset closes c with a TCP reset, which frees it at once on both sides.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// tcpReadBuffer is the size of a TCP connection's read buffer: a query of
// maxQuerySize with its length fits, and a client's pipelined batch of
// small queries is read at once.
const tcpReadBuffer = 8192

// serveTCPConn answers the queries of one connection until the client
// closes it, is silent for server.tcp_idle_timeout (also in the middle of
// a message: a client that sends half a query and stalls is cut off),
// does not take a reply within that time, sends a packet that is dropped
// or announces one larger than maxQuerySize, or has sent server.max_tcp_queries_per_connection
// queries.
//
// Queries are answered concurrently, each reply sent when it is ready, in
// any order (RFC 7766, 6.2.1.1 and 7): a slow name does not hold up the
// queries behind it. Up to maxTCPInFlight of a connection are answered at
// once; then the connection is not read until one is done. The
// connection is idle, and tcp_idle_timeout counts, only while none is
// being answered. Past that bound, the queries already in the read
// buffer are answered too; then the connection is closed gracefully:
// every reply sent, FIN, and what the client still sends read and
// discarded until it closes, so that no reset destroys replies it has not
// read yet (closeGracefully).
func (s *Server) serveTCPConn(tc *tcpConn, client netip.Addr) {
	c := tc.conn
	w := &tcpWriter{conn: c, srv: s}
	var inFlight sync.WaitGroup
	graceful := false
	defer func() {
		inFlight.Wait()
		if graceful && w.failed() == nil {
			s.closeGracefully(tc)
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.release(tc)
		s.mu.Unlock()
		c.Close()
		s.serving.Done()
	}()
	if pc, ok := c.(*proxyproto.Conn); ok {
		if err := pc.Err(); err != nil {
			s.drop(client, fmt.Errorf("%w: %w", errProxyHeader, err))
			return
		}
		if client = clientAddr(pc.RemoteAddr()); !s.handler.State().Policy.Allowed(client) {
			s.drop(client, errNotAllowed)
			return
		}
	}
	r := bufio.NewReaderSize(c, tcpReadBuffer)
	places := make(chan struct{}, s.maxTCPInFlight)
	var out []byte
	var scratch fastScratch
	src := source{transport: "tcp", remote: addrPort(c.RemoteAddr()), local: c.LocalAddr()}
	for q := 0; ; q++ {
		if max := s.settings().MaxTCPQueriesPerConnection; max > 0 && q >= max && !bufferedMessage(r) {
			graceful = true
			return
		}
		raw, err := s.nextTCPMessage(tc, r, w)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				s.drop(client, err)
			}
			return
		}
		if err := checkPacket(raw); err != nil {
			s.drop(client, err)
			return // not a DNS client: do not read on
		}
		if q := s.queries.Load(); q != nil {
			q.tcp.Inc()
		}
		limited := false
		if !s.allow(client) {
			limited = true
		} else if reply, ok := s.handler.serveWire(raw, client, src, out[:0], &scratch); ok {
			out = reply[:0]
			r.Discard(2 + len(raw))
			if _, err := w.Write(reply); err != nil {
				return
			}
			continue
		}
		req := s.request(raw, client) // copies what it keeps
		r.Discard(2 + len(raw))
		if req == nil {
			return
		}
		if limited {
			s.handler.refuse(w, req, client)
			continue
		}
		places <- struct{}{} // waits while maxTCPInFlight are being answered
		tc.addBusy(1, 0)
		// The reader goes back to waiting now: once the answer is written
		// the connection is idle, even if this goroutine is not back yet.
		tc.setWaiting(true, 0)
		inFlight.Add(1)
		go func() {
			defer func() {
				tc.addBusy(-1, w.lastWrite.Load())
				<-places
				inFlight.Done()
			}()
			s.handler.serve(s.ctx, w, req)
		}()
	}
}

// nextTCPMessage waits for the next message of tc, for up to
// tcp_idle_timeout from when the connection became idle, and returns it,
// still in r's buffer (the caller discards it). While queries of the
// connection are being answered it is not idle and waits on. It fails on
// Shutdown, when tc is closed to make room, and when a reply could not be
// written.
func (s *Server) nextTCPMessage(tc *tcpConn, r *bufio.Reader, w *tcpWriter) ([]byte, error) {
	tc.setWaiting(true, w.lastWrite.Load())
	defer tc.setWaiting(false, 0)
	for {
		timeout := s.settings().TCPIdleTimeout
		s.mu.Lock()
		if s.closing || tc.released {
			s.mu.Unlock()
			return nil, errClosing
		}
		if err := w.failed(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		deadline := time.Now().Add(timeout) // busy: checked again then
		if since := tc.idleSince.Load(); since != 0 {
			deadline = time.Unix(0, since).Add(timeout)
		}
		tc.conn.SetReadDeadline(deadline)
		s.mu.Unlock()
		n, err := r.Peek(2)
		if err == nil {
			size := int(binary.BigEndian.Uint16(n))
			if size > maxQuerySize {
				return nil, errTooLarge
			}
			var b []byte
			if b, err = r.Peek(2 + size); err == nil {
				return b[2:], nil
			}
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || r.Buffered() > 0 {
			return nil, err // closed, or stalled in the middle of a message
		}
		if since := tc.idleSince.Load(); since != 0 && time.Since(time.Unix(0, since)) >= timeout {
			return nil, err // idle for tcp_idle_timeout
		}
	}
}

// bufferedMessage reports whether r holds a whole message, read from the
// connection already.
func bufferedMessage(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 2 {
		return false
	}
	b, _ := r.Peek(2)
	return n >= 2+int(binary.BigEndian.Uint16(b))
}

// closeGracefully ends a connection whose replies are all sent: FIN, then
// what the client still sends (queries past server.max_tcp_queries_per_connection) is read and
// discarded until it closes its side, for up to tcp_idle_timeout. Closing
// with unread data would send a reset, and a reset makes the client's
// system discard the replies it has not read yet.
func (s *Server) closeGracefully(tc *tcpConn) {
	c := tc.conn
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
	tc.setWaiting(true, 0) // it may be closed to make room
	s.mu.Lock()
	deadline := time.Now().Add(s.settings().TCPIdleTimeout)
	if s.closing || tc.released {
		deadline = time.Unix(1, 0)
	}
	c.SetReadDeadline(deadline)
	s.mu.Unlock()
	io.Copy(io.Discard, c)
}

// tcpWriter sends replies on a TCP connection, each prefixed with its
// length, for the connection's reading goroutine and those answering its
// queries, one at a time. A write that the client does not take within
// tcp_idle_timeout fails, and so does every write after it; the
// connection stops being read and is closed: a client that never reads
// cannot hold it.
type tcpWriter struct {
	noTSIG
	conn net.Conn
	srv  *Server

	mu  sync.Mutex
	buf []byte
	err error // of the first write that failed
	// lastWrite is when the last reply was written, in Unix nanoseconds.
	lastWrite atomic.Int64
}

func (w *tcpWriter) WriteMsg(m *dns.Msg) error { return writeMsg(w, m) }

func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errors.New("reply larger than 65535 bytes")
	}
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return 0, w.err
	}
	w.buf = binary.BigEndian.AppendUint16(w.buf[:0], uint16(len(b)))
	w.buf = append(w.buf, b...)
	w.conn.SetWriteDeadline(time.Now().Add(w.srv.settings().TCPIdleTimeout))
	w.lastWrite.Store(time.Now().UnixNano()) // before: the client may act on it at once
	_, err := w.conn.Write(w.buf)
	w.err = err
	w.mu.Unlock()
	if err != nil {
		// Wake the reader, which sees w.err. Under the server's mu, like
		// the reader's own deadlines: it cannot be overwritten.
		w.srv.mu.Lock()
		w.conn.SetReadDeadline(time.Unix(1, 0))
		w.srv.mu.Unlock()
		return 0, err
	}
	return len(b), nil
}

// failed returns the error of the write that failed, or nil.
func (w *tcpWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *tcpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.conn.RemoteAddr() }
func (w *tcpWriter) Close() error         { return w.conn.Close() }
