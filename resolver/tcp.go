package resolver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

var errTooManyConnections = errors.New("over server.max_tcp_connections")

// acceptTCP accepts connections on l until Shutdown. A connection beyond
// server.max_tcp_connections is closed at once with a reset, rather than
// left waiting in the kernel's backlog: the client learns at once to use
// UDP or another server, and a client that holds connections open cannot
// make others wait.
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
		if s.tcpActive.Add(1) > int64(s.settings().MaxTCPConnections) {
			s.tcpActive.Add(-1)
			reset(c)
			s.drop(client, errTooManyConnections)
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			s.tcpActive.Add(-1)
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.serving.Add(1)
		s.mu.Unlock()
		go s.serveTCPConn(c, client)
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
func (s *Server) serveTCPConn(c net.Conn, client netip.Addr) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.tcpActive.Add(-1)
		s.serving.Done()
	}()
	w := &tcpWriter{conn: c}
	var buf, out []byte
	var scratch fastScratch
	for q := 0; q < s.maxTCPQueries; q++ {
		timeout := s.settings().TCPIdleTimeout
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		s.mu.Unlock()
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
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
