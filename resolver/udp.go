package resolver

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
	from *net.UDPAddr    // addr, as read (nil: make it from addr)
	sess *dns.SessionUDP // on a socket with sessions
}

// read reads a packet into b.
func (u udpSocket) read(b []byte) (int, udpPeer, error) {
	if u.sessions {
		n, sess, err := dns.ReadFromSessionUDP(u.conn, b)
		if err != nil {
			return 0, udpPeer{}, err
		}
		from := sess.RemoteAddr().(*net.UDPAddr)
		return n, udpPeer{addr: from.AddrPort(), from: from, sess: sess}, nil
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
// each socket, GOMAXPROCS of them. A socket without sessions is read and written
// in batches (recvmmsg and sendmmsg on Linux): one system call for all the
// packets waiting, which is most of the cost of a query under load.
func (s *Server) serveUDP(u udpSocket) {
	defer s.loops.Done()
	if u.sessions {
		s.serveUDPSessions(u)
	} else {
		s.serveUDPBatches(u)
	}
}

// serveUDPSessions reads and answers one packet at a time.
func (s *Server) serveUDPSessions(u udpSocket) {
	buf := make([]byte, maxQuerySize)
	out := make([]byte, 0, ednsSize)
	var scratch fastScratch
	for {
		n, peer, err := u.read(buf)
		if err != nil {
			if s.readFailed(err) {
				return
			}
			continue
		}
		if reply, ok := s.udpPacket(u, buf[:n], peer, out[:0], &scratch); ok {
			if err := u.write(reply, peer); err != nil {
				s.log.Debug("write reply", "client", peer.addr.String(), "err", err)
			}
			out = reply[:0]
		}
	}
}

// udpBatch is how many packets serveUDPBatches reads at once, at most.
const udpBatch = 32

// serveUDPBatches reads the packets waiting on u, up to udpBatch, answers
// those the fast path answers, and sends their replies together.
func (s *Server) serveUDPBatches(u udpSocket) {
	var conn interface {
		ReadBatch([]ipv4.Message, int) (int, error)
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	if u.conn.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
		conn = ipv4.NewPacketConn(u.conn)
	} else {
		conn = ipv6.NewPacketConn(u.conn)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxQuerySize)}
		out[i].Buffers = [][]byte{make([]byte, 0, ednsSize)}
	}
	var scratch fastScratch
	for {
		n, err := conn.ReadBatch(in, 0)
		if err != nil {
			if s.readFailed(err) {
				return
			}
			continue
		}
		replies := 0
		for _, m := range in[:n] {
			from, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			peer := udpPeer{addr: from.AddrPort(), from: from}
			o := &out[replies]
			if reply, ok := s.udpPacket(u, m.Buffers[0][:m.N], peer, o.Buffers[0][:0], &scratch); ok {
				o.Buffers[0], o.Addr = reply, from
				replies++
			}
		}
		for sent := 0; sent < replies; {
			k, err := conn.WriteBatch(out[sent:replies], 0)
			if err != nil {
				s.log.Debug("write replies", "err", err)
				break
			}
			sent += k
		}
	}
}

// readFailed handles a read error: it reports whether the loop must stop
// (Shutdown, or a failed socket, which it reports on Err).
func (s *Server) readFailed(err error) bool {
	switch {
	case s.stopped.Load():
		return true
	case retryable(err):
		return false
	}
	s.fail(err)
	return true
}

// udpPacket handles a packet from peer. Each packet is checked before
// anything else: first the checks that need no parsing (checkPacket), then
// the rate limit, so that a flood costs a read and a table lookup per
// packet, and only packets that look like queries are charged to the
// client's bucket: responses or runts spoofed with a device's source
// address do not drain it. The fast path then answers it: the reply is appended to out and
// returned with true. Otherwise a goroutine takes it through the Handler,
// within the bound on queries in flight, and sends the reply itself.
func (s *Server) udpPacket(u udpSocket, raw []byte, peer udpPeer, out []byte, scratch *fastScratch) ([]byte, bool) {
	client := peer.addr.Addr().Unmap()
	if err := checkPacket(raw); err != nil {
		s.drop(client, err)
		return out, false
	}
	if q := s.queries.Load(); q != nil {
		q.udp.Inc()
	}
	if !s.allow(client) {
		s.drop(client, errRateLimit)
		return out, false
	}
	if reply, ok := s.handler.serveWire(raw, client, source{transport: "udp", remote: peer.addr, local: u.conn.LocalAddr()}, out, scratch); ok {
		return reply, true
	}
	if !s.udpPlaces.take() {
		s.drop(client, errBusy)
		return out, false
	}
	bp := s.bufs.Get().(*[]byte)
	n := copy(*bp, raw)
	s.serving.Add(1)
	go s.serveUDPPacket(u, bp, n, peer, client)
	return out, false
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
	s.handler.serve(s.ctx, &udpWriter{sock: u, peer: peer}, req)
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
func (w *udpWriter) RemoteAddr() net.Addr {
	if w.peer.from != nil {
		return w.peer.from // read from the socket for this packet alone
	}
	return net.UDPAddrFromAddrPort(w.peer.addr)
}
func (w *udpWriter) Close() error { return nil }
