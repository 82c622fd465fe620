package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
)

// plain is a plain-DNS upstream: each query over UDP, from one of a few
// sockets bound to random source ports and renewed often (udp.go), with a
// random ID, so an off-path attacker must guess both to spoof an answer,
// and over TCP when
// the answer is truncated or larger than the payload size advertised. TCP
// connections are kept and pipelined.
type plain struct {
	name   string
	addr   string
	dialer net.Dialer
	tcp    *streamPool
	udp    *udpPool
	// mismatched counts datagrams that are not the answer awaited; nil
	// without metrics. Set before the first query.
	mismatched prometheus.Counter
}

func newPlain(s config.UpstreamServer, st *settings) *plain {
	p := &plain{name: s.Raw, addr: s.Addr}
	p.tcp = newStreamPool(func(ctx context.Context) (net.Conn, error) {
		return p.dialer.DialContext(ctx, "tcp", p.addr)
	}, st)
	p.udp = newUDPPool(p.dialUDP, p.mismatch)
	return p
}

func (p *plain) Name() string { return p.name }

func (p *plain) CloseIdleConnections() {
	p.tcp.closeIdle()
	p.udp.closeIdle()
}

// errTooLarge is a UDP answer larger than the payload size the query
// advertised: it may have been reassembled from forged fragments, so it is
// not used, and the query is asked again over TCP.
var errTooLarge = errors.New("UDP answer larger than the advertised payload size")

// Exchange asks over UDP, and again over TCP when the answer is truncated
// or too large.
func (p *plain) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	d, _ := ctx.Deadline()
	return p.exchangeBy(ctx, req, d)
}

// exchangeBy is Exchange ending at deadline too, unless it is zero; over
// UDP without a context of its own.
func (p *plain) exchangeBy(ctx context.Context, req *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	resp, err := p.exchangeUDPBy(ctx, req, deadline)
	if errors.Is(err, errTooLarge) || err == nil && resp.Truncated {
		if !deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		return p.tcp.exchange(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// exchangeUDP sends req over one of the server's UDP sockets (udp.go)
// with a fresh random ID and waits for its answer, until ctx is done. A
// datagram from the server that does not answer req is counted and
// ignored by the socket's reader: a spoofed answer does not end the query.
func (p *plain) exchangeUDP(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	d, _ := ctx.Deadline()
	return p.exchangeUDPBy(ctx, req, d)
}

// exchangeUDPBy is exchangeUDP ending at deadline too, unless it is zero,
// with context.DeadlineExceeded. The waiter's timer is reused.
func (p *plain) exchangeUDPBy(ctx context.Context, req *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
	}
	w := p.udp.waiters.Get().(*udpWaiter)
	defer p.udp.waiters.Put(w)
	w.req, w.size = req, size
	defer func() { w.req = nil }()
	s, id, err := p.udp.acquire(w, time.Now())
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	wire, ok := appendQuery(w.buf[:], req, id)
	if !ok {
		buf, err := pack(req, id)
		if err != nil {
			s.remove(id, w)
			return nil, err
		}
		wire = buf[2:]
	}
	if _, err := s.conn.Write(wire); err != nil {
		s.remove(id, w)
		return nil, ctxErr(ctx, err)
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		w.timer.Reset(time.Until(deadline))
		defer w.timer.Stop()
		expired = w.timer.C
	}
	select {
	case r := <-w.ch:
		return r.resp, r.err
	case <-ctx.Done():
		s.remove(id, w)
		return nil, ctx.Err()
	case <-expired:
		s.remove(id, w)
		return nil, context.DeadlineExceeded
	}
}

func (p *plain) mismatch() {
	if p.mismatched != nil {
		p.mismatched.Inc()
	}
}

// Source ports of UDP queries are drawn from [minPort, maxPort]: the 16-bit
// range less the privileged ports, about 16 bits of entropy where the
// kernel's ephemeral range (32768-60999 on Linux) gives under 15. A port
// in use is replaced by another, up to portTries times, then the kernel
// picks one.
const (
	minPort   = 1024
	maxPort   = 65535
	portTries = 8
)

// dialUDP returns a UDP socket connected to the server from a random
// source port. The server's address is an IP address and port (config
// checks it), so dialing it makes no lookup.
func (p *plain) dialUDP() (*net.UDPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", p.addr)
	if err != nil {
		return nil, err
	}
	for range portTries {
		conn, err := net.DialUDP("udp", &net.UDPAddr{Port: minPort + rand.IntN(maxPort-minPort+1)}, raddr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
			return nil, err
		}
	}
	return net.DialUDP("udp", nil, raddr)
}

// ctxErr returns ctx's error when ctx is done (the real reason a read or
// write was interrupted), else err.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
