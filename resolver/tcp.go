package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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
// Server.mu but for idleSince.
type tcpConn struct {
	conn   net.Conn
	client netip.Prefix // the client's address, or its /64 for IPv6
	// idleSince is when the connection began to wait for its next query, in
	// Unix nanoseconds; 0 while a query is read or answered.
	idleSince atomic.Int64
	released  bool // its places are given back: it is closing
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

// serveTCPConn answers the queries of one connection, one after the other,
// until the client closes it, is silent for server.tcp_idle_timeout (also
// in the middle of a message: a client that sends half a query and stalls
// is cut off), does not take a reply within that time, sends a packet that
// is dropped or announces one larger than maxQuerySize, or has sent
// maxTCPQueries queries.
func (s *Server) serveTCPConn(tc *tcpConn, client netip.Addr) {
	c := tc.conn
	defer func() {
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
	w := &tcpWriter{conn: c}
	var buf, out []byte
	var scratch fastScratch
	for q := 0; q < s.maxTCPQueries; q++ {
		timeout := s.settings().TCPIdleTimeout
		s.mu.Lock()
		if s.closing || tc.released {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		c.SetReadDeadline(now.Add(timeout))
		tc.idleSince.Store(now.UnixNano())
		s.mu.Unlock()
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		tc.idleSince.Store(0)
		size := int(binary.BigEndian.Uint16(n[:]))
		if size > maxQuerySize {
			s.drop(client, errTooLarge)
			return
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if err := checkPacket(buf); err != nil {
			s.drop(client, err)
			return // not a DNS client: do not read on
		}
		if q := s.queries.Load(); q != nil {
			q.tcp.Inc()
		}
		w.timeout = timeout
		limited := false
		if rate := s.settings().RateLimit; rate > 0 && !s.limiter.Allow(client, rate, time.Now()) {
			limited = true
		} else if reply, ok := s.handler.serveWire(buf, client, false, out[:0], &scratch); ok {
			out = reply[:0]
			w.Write(reply)
			if w.err != nil {
				return
			}
			continue
		}
		req := s.request(buf, client)
		if req == nil {
			return
		}
		if limited {
			s.handler.refuse(w, req, client)
		} else {
			s.handler.ServeDNS(w, req)
		}
		if w.err != nil {
			return
		}
	}
}

// tcpWriter sends replies on a TCP connection, each prefixed with its
// length. A write that the client does not take within timeout fails, and
// the connection is closed: a client that never reads cannot hold it.
type tcpWriter struct {
	noTSIG
	conn    net.Conn
	timeout time.Duration
	buf     []byte
	err     error // the last write's
}

func (w *tcpWriter) WriteMsg(m *dns.Msg) error { return writeMsg(w, m) }

func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errors.New("reply larger than 65535 bytes")
	}
	w.buf = binary.BigEndian.AppendUint16(w.buf[:0], uint16(len(b)))
	w.buf = append(w.buf, b...)
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	if _, w.err = w.conn.Write(w.buf); w.err != nil {
		return 0, w.err
	}
	return len(b), nil
}

func (w *tcpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.conn.RemoteAddr() }
func (w *tcpWriter) Close() error         { return w.conn.Close() }
