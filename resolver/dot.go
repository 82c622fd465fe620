package resolver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/appfence/appfence/policy"
)

// acceptDoT accepts DNS-over-TLS connections (RFC 7858) on l until
// Shutdown. Like TCP, a connection beyond server.max_tcp_connections (DoT
// connections are counted on their own) is reset at once.
func (t *TLSServer) acceptDoT(l net.Listener) {
	defer t.loops.Done()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			t.mu.Lock()
			closing := t.closing
			t.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return
			}
			if retryable(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			t.fail(err)
			return
		}
		backoff = 0
		peer := clientAddr(c.RemoteAddr())
		if t.dotActive.Add(1) > int64(t.settings().MaxTCPConnections) {
			t.dotActive.Add(-1)
			reset(c)
			t.srv.drop(peer, errTooManyConnections)
			continue
		}
		c = t.proxied(c, peer)
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			t.dotActive.Add(-1)
			c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.serving.Add(1)
		t.mu.Unlock()
		go t.serveDoT(c)
	}
}

// serveDoT does the TLS handshake of one connection, within
// handshakeTimeout, and answers its queries: framed like TCP, up to
// maxInFlight at once, each reply sent when it is ready (RFC 7858, 3.3).
// The connection is closed when the client closes it, is silent for
// server.tcp_idle_timeout, sends a packet that is dropped, or does not take
// a reply within that time. The client's address is that of the PROXY
// header when raw is from a trusted balancer.
func (t *TLSServer) serveDoT(raw net.Conn) {
	t.connections("dot", 1)
	var inFlight sync.WaitGroup
	defer func() {
		inFlight.Wait()
		t.mu.Lock()
		delete(t.conns, raw)
		t.mu.Unlock()
		raw.Close()
		t.dotActive.Add(-1)
		t.connections("dot", -1)
		t.serving.Done()
	}()
	client, ok := t.clientOf(raw)
	if !ok {
		return
	}
	c := tls.Server(raw, t.dotConf)
	ctx, cancel := context.WithTimeout(t.ctx, t.handshakeTimeout)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		t.handshakeFailed("dot", client, err)
		return
	}
	cs := c.ConnectionState()
	clientID, _ := sniClientID(cs.ServerName, t.cfg.ServerName) // checked in the handshake
	id := policy.Identity{ClientID: clientID, CertNames: certNames(&cs)}

	var writeMu sync.Mutex
	var writeErr error
	var frame []byte // under writeMu: the reply, framed, in one write
	send := func(b []byte) error {
		if len(b) > 0xFFFF {
			return errors.New("reply larger than 65535 bytes")
		}
		writeMu.Lock()
		defer writeMu.Unlock()
		if writeErr != nil {
			return writeErr
		}
		frame = binary.BigEndian.AppendUint16(frame[:0], uint16(len(b)))
		frame = append(frame, b...)
		c.SetWriteDeadline(time.Now().Add(t.settings().TCPIdleTimeout))
		if _, err := c.Write(frame); err != nil {
			writeErr = err
			raw.SetReadDeadline(time.Unix(1, 0)) // stop reading too
		}
		return writeErr
	}
	places := make(chan struct{}, t.maxInFlight)
	var buf []byte // the query being read
	var scratch encScratch
	src := source{transport: "dot", id: &id, remote: addrPort(raw.RemoteAddr()), local: raw.LocalAddr()}
	for {
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			return
		}
		raw.SetReadDeadline(time.Now().Add(t.settings().TCPIdleTimeout))
		t.mu.Unlock()
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint16(n[:]))
		if size > maxQuerySize {
			t.srv.drop(client, errTooLarge)
			return
		}
		buf = slices.Grow(buf[:0], size)[:size]
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if err := checkPacket(buf); err != nil {
			t.srv.drop(client, err)
			return // not a DNS client: do not read on
		}
		allowed := t.admit("dot", client)
		if allowed && t.answerFast(src, buf, client, &scratch, send) {
			continue // answered in this goroutine, as TCP's fast path is
		}
		query := bytes.Clone(buf)
		places <- struct{}{} // waits while maxInFlight are being answered
		inFlight.Add(1)
		go func() {
			defer func() {
				<-places
				inFlight.Done()
			}()
			w := &encWriter{local: raw.LocalAddr(), remote: raw.RemoteAddr(), id: id, send: send}
			t.answer("dot", query, client, w, allowed)
		}()
	}
}
