package upstream

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
)

// plain is a plain-DNS upstream: each query over UDP from a fresh socket
// bound to a random source port (see dialUDP) with a random ID, so an
// off-path attacker must guess both to spoof an answer, and over TCP when
// the answer is truncated or larger than the payload size advertised. TCP
// connections are kept and pipelined.
type plain struct {
	name   string
	addr   string
	dialer net.Dialer
	tcp    *streamPool
	// mismatched counts datagrams that are not the answer awaited; nil
	// without metrics. Set before the first query.
	mismatched prometheus.Counter
}

func newPlain(s config.UpstreamServer, st *settings) *plain {
	p := &plain{name: s.Raw, addr: s.Addr}
	p.tcp = newStreamPool(func(ctx context.Context) (net.Conn, error) {
		return p.dialer.DialContext(ctx, "tcp", p.addr)
	}, st)
	return p
}

func (p *plain) Name() string { return p.name }

func (p *plain) CloseIdleConnections() { p.tcp.closeIdle() }

// errTooLarge is a UDP answer larger than the payload size the query
// advertised: it may have been reassembled from forged fragments, so it is
// not used, and the query is asked again over TCP.
var errTooLarge = errors.New("UDP answer larger than the advertised payload size")

// Exchange asks over UDP, and again over TCP when the answer is truncated
// or too large.
func (p *plain) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	resp, err := p.exchangeUDP(ctx, req)
	if errors.Is(err, errTooLarge) || err == nil && resp.Truncated {
		return p.tcp.exchange(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// exchangeUDP sends req from a new UDP socket and waits for its answer.
// The socket is connected, so the kernel drops datagrams from any other
// address; a datagram from the server that does not answer req (another
// ID, not a response, another question, or not a DNS message) is counted
// and ignored, and the wait goes on until the real answer or ctx's
// deadline: a spoofed answer does not end the query.
func (p *plain) exchangeUDP(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	id := dns.Id()
	buf, err := pack(req, id)
	if err != nil {
		return nil, err
	}
	conn, err := p.dialUDP(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := abortOnDone(ctx, conn)
	defer stop()
	if _, err := conn.Write(buf[2:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
	}
	// One byte more than advertised: a datagram that fills it is too large.
	in := make([]byte, size+1)
	for {
		n, err := conn.Read(in)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if n < 12 || binary.BigEndian.Uint16(in) != id {
			p.mismatch() // not our answer: a stray or spoofed packet
			continue
		}
		if n > size {
			return nil, errTooLarge
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(in[:n]); err != nil {
			p.mismatch()
			continue
		}
		resp.Id = req.Id
		if checkResponse(req, resp) != nil {
			p.mismatch()
			continue
		}
		return resp, nil
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
// source port.
func (p *plain) dialUDP(ctx context.Context) (net.Conn, error) {
	for range portTries {
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: minPort + rand.IntN(maxPort-minPort+1)}}
		conn, err := d.DialContext(ctx, "udp", p.addr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
			return nil, err
		}
	}
	return p.dialer.DialContext(ctx, "udp", p.addr)
}

// abortOnDone makes blocked reads and writes on conn return as soon as ctx
// is done; a deadline of ctx is also set on conn. The returned function
// stops watching ctx.
func abortOnDone(ctx context.Context, conn net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

// ctxErr returns ctx's error when ctx is done (the real reason a read or
// write was interrupted), else err.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
