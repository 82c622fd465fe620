package resolver

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// serveUDP reads queries from conn until Shutdown. The checks that need no
// parsing are made here, before a goroutine is started for the packet: the
// rate limit and the bound on queries in flight, so that a flood costs a
// read and a table lookup per packet.
func (s *Server) serveUDP(conn *net.UDPConn) {
	defer s.loops.Done()
	for {
		bp := s.bufs.Get().(*[]byte)
		n, sess, err := dns.ReadFromSessionUDP(conn, *bp)
		if err != nil {
			s.bufs.Put(bp)
			if s.stopped.Load() {
				return
			}
			if retryable(err) {
				continue
			}
			s.fail(err)
			return
		}
		client := clientAddr(sess.RemoteAddr())
		if err := s.admitUDP(client); err != nil {
			s.bufs.Put(bp)
			s.drop(client, err)
			continue
		}
		s.serving.Add(1)
		go s.serveUDPPacket(conn, bp, n, sess, client)
	}
}

// admitUDP applies the limits to a UDP packet from client; on success it
// holds one of the in-flight places, which serveUDPPacket gives back.
func (s *Server) admitUDP(client netip.Addr) error {
	if rate := s.settings().RateLimit; rate > 0 && !s.limiter.Allow(client, rate, time.Now()) {
		return errRateLimit
	}
	if !s.udpPlaces.take() {
		return errBusy
	}
	return nil
}

func (s *Server) serveUDPPacket(conn *net.UDPConn, bp *[]byte, n int, sess *dns.SessionUDP, client netip.Addr) {
	defer s.serving.Done()
	defer s.udpPlaces.give()
	req := s.request((*bp)[:n], client)
	s.bufs.Put(bp) // Unpack copies what it keeps
	if req == nil {
		return
	}
	s.handler.ServeDNS(&udpWriter{conn: conn, sess: sess}, req)
}

// udpWriter sends the reply to one UDP query, from the address the query
// was sent to.
type udpWriter struct {
	noTSIG
	conn *net.UDPConn
	sess *dns.SessionUDP
}

func (w *udpWriter) WriteMsg(m *dns.Msg) error   { return writeMsg(w, m) }
func (w *udpWriter) Write(b []byte) (int, error) { return dns.WriteToSessionUDP(w.conn, b, w.sess) }
func (w *udpWriter) LocalAddr() net.Addr         { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr        { return w.sess.RemoteAddr() }
func (w *udpWriter) Close() error                { return nil }
