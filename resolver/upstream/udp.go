package upstream

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The UDP sockets of one plain server. Queries share a few long-lived
// connected sockets instead of opening one each (a socket, a bind and a
// connect per query were a fifth of a cache miss): each socket takes
// udpMaxUses queries or lives udpMaxAge, whichever comes first, and is then
// replaced by a socket on another random port, so that an off-path
// attacker still faces a source port that changes (RFC 5452 9.2) as well
// as a random ID per query.
const (
	udpSockets = 4
	udpMaxUses = 100
	udpMaxAge  = 10 * time.Second
)

// udpResult is what a waiter is handed: the answer or why there is none.
type udpResult struct {
	resp *dns.Msg
	err  error
}

// udpWaiter is one query waiting for its answer on a udpSock.
type udpWaiter struct {
	req  *dns.Msg
	size int            // the payload size advertised: a larger answer is not used
	ch   chan udpResult // capacity 1: at most one result per registration
	// timer ends the wait at the query's deadline; stopped between uses.
	timer *time.Timer
	// buf holds the query in wire format (appendQuery).
	buf [512]byte
}

// newWaiter makes a udpWaiter, with its stopped timer.
func newWaiter() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &udpWaiter{ch: make(chan udpResult, 1), timer: t}
}

// udpPool is the set of UDP sockets of one server, with the source of
// message IDs. It is safe for concurrent use.
type udpPool struct {
	dial     func() (*net.UDPConn, error)
	mismatch func()
	maxUses  int
	maxAge   time.Duration
	// waiters are reused, with their channel and timer: a query takes one
	// and gives it back.
	waiters sync.Pool
	// bufs are the readers' buffers (*[]byte of dns.MaxMsgSize), passed on
	// from a retired socket to its successor.
	bufs sync.Pool

	mu     sync.Mutex
	socks  [udpSockets]*udpSock
	next   int
	ids    [64]byte // random bytes, two per ID
	idsOff int
}

func newUDPPool(dial func() (*net.UDPConn, error), mismatch func()) *udpPool {
	p := &udpPool{dial: dial, mismatch: mismatch, maxUses: udpMaxUses, maxAge: udpMaxAge}
	p.idsOff = len(p.ids)
	p.waiters.New = newWaiter
	p.bufs.New = func() any {
		b := make([]byte, dns.MaxMsgSize)
		return &b
	}
	return p
}

// id returns a message ID from crypto/rand, read in batches; p.mu is held.
func (p *udpPool) id() uint16 {
	if p.idsOff == len(p.ids) {
		rand.Read(p.ids[:]) // never fails (crypto/rand's contract)
		p.idsOff = 0
	}
	id := binary.BigEndian.Uint16(p.ids[p.idsOff:])
	p.idsOff += 2
	return id
}

// acquire registers w on one of the pool's sockets (the next in turn,
// replaced when it has served its queries or its time) under a fresh
// random ID, and returns the socket and the ID.
func (p *udpPool) acquire(w *udpWaiter, now time.Time) (*udpSock, uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.next
	p.next = (i + 1) % len(p.socks)
	s := p.socks[i]
	if s != nil {
		if id, ok := s.add(p, w, now); ok {
			return s, id, nil
		}
		s.retire()
		p.socks[i] = nil
	}
	conn, err := p.dial()
	if err != nil {
		return nil, 0, err
	}
	s = &udpSock{conn: conn, born: now, waiters: make(map[uint16]*udpWaiter)}
	p.socks[i] = s
	id, ok := s.add(p, w, now) // before the reader can retire it
	go s.read(p)
	if !ok {
		return nil, 0, errors.New("new UDP socket refused a query") // maxUses or maxAge of 0
	}
	return s, id, nil
}

// closeIdle retires every socket: those without queries in flight close
// now, the others after their last answer.
func (p *udpPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.socks {
		if s != nil {
			s.retire()
			p.socks[i] = nil
		}
	}
}

// udpSock is one connected UDP socket and the queries waiting on it. Its
// reader goroutine hands each answer to the waiter with its ID and
// question; the kernel drops datagrams from any other address.
type udpSock struct {
	conn *net.UDPConn
	born time.Time

	mu      sync.Mutex
	waiters map[uint16]*udpWaiter
	uses    int
	retired bool // takes no more queries; closed with its last waiter
	closed  bool
}

// add registers w under an ID unused on s, unless s is retired, has served
// its queries or is too old; p.mu is held.
func (s *udpSock) add(p *udpPool, w *udpWaiter, now time.Time) (uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired || s.uses >= p.maxUses || now.Sub(s.born) >= p.maxAge {
		return 0, false
	}
	id := p.id()
	for s.waiters[id] != nil {
		id = p.id()
	}
	s.waiters[id] = w
	s.uses++
	return id, true
}

// remove unregisters w (under id) when it stops waiting without its
// result; a result already handed to it is drained, so w can be reused.
func (s *udpSock) remove(id uint16, w *udpWaiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters[id] == w {
		delete(s.waiters, id)
	} else {
		<-w.ch // handed under s.mu: it is there
	}
	s.closeIfDone()
}

// retire takes s out of use: it closes once no query waits on it.
func (s *udpSock) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	s.closeIfDone()
}

// closeIfDone closes a retired socket without waiters; s.mu is held.
func (s *udpSock) closeIfDone() {
	if s.retired && len(s.waiters) == 0 && !s.closed {
		s.closed = true
		s.conn.Close()
	}
}

// hand gives w, registered under id, its result; s.mu is held.
func (s *udpSock) hand(id uint16, w *udpWaiter, r udpResult) {
	delete(s.waiters, id)
	w.ch <- r
	s.closeIfDone()
}

// read reads the socket's datagrams until it is closed, and hands each
// answer to its waiter. A datagram that answers no query waiting (another
// ID, not a response, another question, or not a DNS message) is counted
// and ignored: a spoofed answer does not end a query. At the socket's age
// it is retired, and it reads on for the queries still in flight.
func (s *udpSock) read(p *udpPool) {
	s.conn.SetReadDeadline(s.born.Add(p.maxAge))
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if s.readFailed(err) {
				return
			}
			continue
		}
		if n < 12 {
			p.mismatch()
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		resp := new(dns.Msg)
		unpackErr := resp.Unpack(buf[:n])
		s.mu.Lock()
		w := s.waiters[id]
		switch {
		case w == nil:
			p.mismatch()
		case n > w.size:
			s.hand(id, w, udpResult{err: errTooLarge})
		case unpackErr != nil:
			p.mismatch()
		default:
			resp.Id = w.req.Id
			if checkResponse(w.req, resp) != nil {
				p.mismatch()
				break
			}
			s.hand(id, w, udpResult{resp: resp})
		}
		s.mu.Unlock()
	}
}

// readFailed handles a read error and reports whether the reader stops: on
// a closed socket. At the socket's age, it is retired. Another error (an
// ICMP port unreachable: ECONNREFUSED) fails the queries waiting.
func (s *udpSock) readFailed(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ne net.Error
	switch {
	case s.closed || errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		s.conn.SetReadDeadline(time.Time{}) // answers of the queries in flight
		s.retired = true
		s.closeIfDone()
		return s.closed
	}
	for id, w := range s.waiters {
		delete(s.waiters, id)
		w.ch <- udpResult{err: err}
	}
	s.closeIfDone()
	return s.closed
}

// appendQuery writes req in wire format, its ID id, into buf (512 bytes)
// without allocating, when req is a plain query: one question, no
// records but an OPT without options. It reports false for any other
// message, which pack then packs.
func appendQuery(buf []byte, req *dns.Msg, id uint16) ([]byte, bool) {
	if len(req.Question) != 1 || len(req.Answer) != 0 || len(req.Ns) != 0 || len(req.Extra) > 1 || req.Rcode > 0xf || req.Opcode > 0xf {
		return nil, false
	}
	var opt *dns.OPT
	if len(req.Extra) == 1 {
		o, ok := req.Extra[0].(*dns.OPT)
		if !ok || len(o.Option) != 0 || o.Hdr.Name != "." {
			return nil, false
		}
		opt = o
	}
	h := &req.MsgHdr
	flags := uint16(h.Opcode)<<11 | uint16(h.Rcode)
	for _, f := range [...]struct {
		set bool
		bit uint16
	}{
		{h.Response, 1 << 15}, {h.Authoritative, 1 << 10}, {h.Truncated, 1 << 9},
		{h.RecursionDesired, 1 << 8}, {h.RecursionAvailable, 1 << 7}, {h.Zero, 1 << 6},
		{h.AuthenticatedData, 1 << 5}, {h.CheckingDisabled, 1 << 4},
	} {
		if f.set {
			flags |= f.bit
		}
	}
	binary.BigEndian.PutUint16(buf[0:], id)
	binary.BigEndian.PutUint16(buf[2:], flags)
	binary.BigEndian.PutUint16(buf[4:], 1)
	binary.BigEndian.PutUint16(buf[6:], 0)
	binary.BigEndian.PutUint16(buf[8:], 0)
	binary.BigEndian.PutUint16(buf[10:], uint16(len(req.Extra)))
	q := req.Question[0]
	off, err := dns.PackDomainName(q.Name, buf, 12, nil, false)
	if err != nil || off+4+11 > len(buf) {
		return nil, false
	}
	binary.BigEndian.PutUint16(buf[off:], q.Qtype)
	binary.BigEndian.PutUint16(buf[off+2:], q.Qclass)
	off += 4
	if opt != nil {
		buf[off] = 0 // the root
		binary.BigEndian.PutUint16(buf[off+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(buf[off+3:], opt.Hdr.Class)
		binary.BigEndian.PutUint32(buf[off+5:], opt.Hdr.Ttl)
		binary.BigEndian.PutUint16(buf[off+9:], 0)
		off += 11
	}
	return buf[:off], true
}
