package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/appfence/appfence/policy"
)

// Error codes of DNS over QUIC (RFC 9250, 4.3).
const (
	doqNoError       quic.ApplicationErrorCode = 0x0
	doqInternalError quic.ApplicationErrorCode = 0x1
	doqProtocolError quic.ApplicationErrorCode = 0x2
	doqExcessiveLoad quic.ApplicationErrorCode = 0x4
)

// doqCloseLinger is how long a DoQ connection whose streams are all
// answered stays open at Shutdown, for its last replies to arrive, before
// it is closed (a QUIC close discards the stream data not yet delivered).
const doqCloseLinger = 250 * time.Millisecond

// errDoQID is a DoQ query whose Message ID is not 0 (RFC 9250, 4.2.1).
var errDoQID = errors.New("doq: message ID is not 0")

// quicConfig is the QUIC configuration of the DoQ listeners: the idle
// timeout of TCP, the handshake timeout of DoT as the handshake's idle
// timeout (quic-go allows twice that for the whole handshake), at most maxInFlight
// streams (queries) at once per connection, no unidirectional streams and
// no 0-RTT (a replayed 0-RTT query would be answered twice and counted
// twice; RFC 9250, 4.5).
func (t *TLSServer) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  t.handshakeTimeout,
		MaxIdleTimeout:        t.settings().TCPIdleTimeout,
		MaxIncomingStreams:    int64(t.maxInFlight),
		MaxIncomingUniStreams: -1,
		Allow0RTT:             false,
	}
}

// listenDoQ binds the DoQ listener of addr, on a quic.Transport of its
// own: closing the listener (Shutdown) then stops new connections but
// leaves the established ones, whose queries in flight are answered;
// closing the transport ends them.
func (t *TLSServer) listenDoQ(addr string) (*quic.Listener, *quic.Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("doq listen %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, nil, fmt.Errorf("doq listen %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: conn}
	l, err := tr.Listen(t.doqConf.Clone(), t.quicConfig())
	if err != nil {
		tr.Close()
		conn.Close()
		return nil, nil, fmt.Errorf("doq listen %s: %w", addr, err)
	}
	return l, tr, nil
}

// acceptDoQ accepts DNS-over-QUIC connections (RFC 9250) on l until
// Shutdown. A connection beyond server.max_tcp_connections (DoQ
// connections are counted on their own) is closed with
// DOQ_EXCESSIVE_LOAD.
func (t *TLSServer) acceptDoQ(ctx context.Context, l *quic.Listener) {
	defer t.loops.Done()
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			t.mu.Lock()
			closing := t.closing
			t.mu.Unlock()
			if !closing && !errors.Is(err, quic.ErrServerClosed) && ctx.Err() == nil {
				t.fail(fmt.Errorf("doq accept: %w", err))
			}
			return
		}
		client := clientAddr(c.RemoteAddr())
		if t.doqActive.Add(1) > int64(t.settings().MaxTCPConnections) {
			t.doqActive.Add(-1)
			c.CloseWithError(doqExcessiveLoad, "too many connections")
			t.srv.drop(client, errTooManyConnections)
			continue
		}
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			t.doqActive.Add(-1)
			c.CloseWithError(doqNoError, "")
			return
		}
		t.serving.Add(1)
		t.mu.Unlock()
		go t.serveDoQ(ctx, c, client)
	}
}

// serveDoQ answers the streams of one DoQ connection, one query a stream,
// until the client closes it, it is idle for server.tcp_idle_timeout, or
// it breaks a rule of RFC 9250 (then it is closed with
// DOQ_PROTOCOL_ERROR).
func (t *TLSServer) serveDoQ(ctx context.Context, c *quic.Conn, client netip.Addr) {
	t.connections("doq", 1)
	var streams sync.WaitGroup
	defer func() {
		streams.Wait()
		if t.shuttingDown() {
			// The last replies may still be on their way: closing now
			// would discard them. Give the client doqCloseLinger to read
			// them and close first.
			linger := time.NewTimer(doqCloseLinger)
			select {
			case <-c.Context().Done():
			case <-linger.C:
			}
			linger.Stop()
		}
		c.CloseWithError(doqNoError, "")
		t.doqActive.Add(-1)
		t.connections("doq", -1)
		t.serving.Done()
	}()
	cs := c.ConnectionState().TLS
	clientID, _ := sniClientID(cs.ServerName, t.cfg.ServerName) // checked in the handshake
	id := policy.Identity{ClientID: clientID, CertNames: certNames(&cs)}
	for {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return // closed by the client, idle, or Shutdown
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			if err := t.serveDoQStream(c, s, client, id); err != nil {
				t.srv.drop(client, err)
				c.CloseWithError(doqProtocolError, err.Error())
			}
		}()
	}
}

// serveDoQStream reads the one query of s (2-byte length, then the
// message; RFC 9250, 4.2) and answers it on s, then closes s. An error is
// a breach of the protocol that closes the connection.
func (t *TLSServer) serveDoQStream(c *quic.Conn, s *quic.Stream, client netip.Addr, id policy.Identity) error {
	s.SetDeadline(time.Now().Add(t.settings().TCPIdleTimeout))
	var n [2]byte
	if _, err := io.ReadFull(s, n[:]); err != nil {
		s.CancelRead(quic.StreamErrorCode(doqProtocolError))
		s.CancelWrite(quic.StreamErrorCode(doqProtocolError))
		return nil // a stream the client gave up: not a breach
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size > maxQuerySize {
		return errTooLarge
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(s, buf); err != nil {
		s.CancelWrite(quic.StreamErrorCode(doqProtocolError))
		return nil
	}
	if err := checkPacket(buf); err != nil {
		return err
	}
	if binary.BigEndian.Uint16(buf) != 0 {
		return errDoQID
	}
	sent := false
	send := func(b []byte) error {
		if len(b) > 0xFFFF {
			return errors.New("reply larger than 65535 bytes")
		}
		frame := make([]byte, 2+len(b))
		binary.BigEndian.PutUint16(frame, uint16(len(b)))
		copy(frame[2:], b)
		binary.BigEndian.PutUint16(frame[2:], 0) // the ID stays 0
		sent = true
		if _, err := s.Write(frame); err != nil {
			return err
		}
		return s.Close()
	}
	t.query("doq", buf, client, &encWriter{local: c.LocalAddr(), remote: c.RemoteAddr(), id: id, send: send})
	if !sent {
		// Dropped unanswered: the stream is reset (RFC 9250, 4.3.3).
		s.CancelRead(quic.StreamErrorCode(doqInternalError))
		s.CancelWrite(quic.StreamErrorCode(doqInternalError))
	}
	return nil
}
