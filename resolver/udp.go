package resolver

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// udpSocket is a UDP socket the server reads queries from. On a wildcard
// address (0.0.0.0, ::) the socket reports each packet's destination
// address, and each reply is sent from it (sessions); on a specific
// address it is the source of every reply already, and packets are read
// and written without control messages, which costs less.
type udpSocket struct {
	conn     *net.UDPConn
	sessions bool
}

// udpPeer is where a UDP query came from, and where its reply goes.
type udpPeer struct {
	addr netip.AddrPort
	sess *dns.SessionUDP // on a socket with sessions
}

// read reads a packet into b.
func (u udpSocket) read(b []byte) (int, udpPeer, error) {
	if u.sessions {
		n, sess, err := dns.ReadFromSessionUDP(u.conn, b)
		if err != nil {
			return 0, udpPeer{}, err
		}
		return n, udpPeer{addr: sess.RemoteAddr().(*net.UDPAddr).AddrPort(), sess: sess}, nil
	}
	n, addr, err := u.conn.ReadFromUDPAddrPort(b)
	return n, udpPeer{addr: addr}, err
}

// write sends b to p.
func (u udpSocket) write(b []byte, p udpPeer) error {
	if p.sess != nil {
		_, err := dns.WriteToSessionUDP(u.conn, b, p.sess)
		return err
	}
	_, err := u.conn.WriteToUDPAddrPort(b, p.addr)
	return err
}

// serveUDP reads queries from u until Shutdown; the server runs several on
// each socket (udpReaders). Each packet is checked before anything else:
// the rate limit and the checks that need no parsing (checkPacket), so
// that a flood costs a read and a table lookup per packet. The fast path
// then answers it here, when it can; otherwise a goroutine takes it
// through the Handler, within the bound on queries in flight.
func (s *Server) serveUDP(u udpSocket) {
	defer s.loops.Done()
	buf := make([]byte, maxQuerySize)
	out := make([]byte, 0, ednsSize)
	var scratch fastScratch
	for {
		n, peer, err := u.read(buf)
		if err != nil {
			if s.stopped.Load() {
				return
			}
			if retryable(err) {
				continue
			}
			s.fail(err)
			return
		}
		client := peer.addr.Addr().Unmap()
		if rate := s.settings().RateLimit; rate > 0 && !s.limiter.Allow(client, rate, time.Now()) {
			s.drop(client, errRateLimit)
			continue
		}
		raw := buf[:n]
		if err := checkPacket(raw); err != nil {
			s.drop(client, err)
			continue
		}
		if reply, ok := s.handler.serveWire(raw, client, true, out[:0], &scratch); ok {
			if err := u.write(reply, peer); err != nil {
				s.log.Debug("write reply", "client", client.String(), "err", err)
			}
			out = reply[:0]
			continue
		}
		if !s.udpPlaces.take() {
			s.drop(client, errBusy)
			continue
		}
		bp := s.bufs.Get().(*[]byte)
		n = copy(*bp, raw)
		s.serving.Add(1)
		go s.serveUDPPacket(u, bp, n, peer, client)
	}
}

// serveUDPPacket answers a packet that the fast path left through the
// Handler, and gives back its place among the queries in flight.
func (s *Server) serveUDPPacket(u udpSocket, bp *[]byte, n int, peer udpPeer, client netip.Addr) {
	defer s.serving.Done()
	defer s.udpPlaces.give()
	req := s.request((*bp)[:n], client)
	s.bufs.Put(bp) // Unpack copies what it keeps
	if req == nil {
		return
	}
	s.handler.ServeDNS(&udpWriter{sock: u, peer: peer}, req)
}

// udpWriter sends the reply to one UDP query, from the address the query
// was sent to.
type udpWriter struct {
	noTSIG
	sock udpSocket
	peer udpPeer
}

func (w *udpWriter) WriteMsg(m *dns.Msg) error   { return writeMsg(w, m) }
func (w *udpWriter) Write(b []byte) (int, error) { return len(b), w.sock.write(b, w.peer) }
func (w *udpWriter) LocalAddr() net.Addr         { return w.sock.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr        { return net.UDPAddrFromAddrPort(w.peer.addr) }
func (w *udpWriter) Close() error                { return nil }
