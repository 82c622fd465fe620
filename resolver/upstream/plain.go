package upstream

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
)

// plain is a plain-DNS upstream: each query over UDP from a fresh socket
// (so a fresh source port and a random ID: an off-path attacker must guess
// both to spoof an answer), and over TCP when the answer is truncated. TCP
// connections are kept and pipelined.
type plain struct {
	name   string
	addr   string
	dialer net.Dialer
	tcp    *streamPool
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

// Exchange asks over UDP, and again over TCP when the answer is truncated.
func (p *plain) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	resp, err := p.exchangeUDP(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		return p.tcp.exchange(ctx, req)
	}
	return resp, nil
}

// exchangeUDP sends req from a new UDP socket and waits for the answer with
// its ID, ignoring anything else that arrives.
func (p *plain) exchangeUDP(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	id := dns.Id()
	buf, err := pack(req, id)
	if err != nil {
		return nil, err
	}
	conn, err := p.dialer.DialContext(ctx, "udp", p.addr)
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
	in := make([]byte, size)
	for {
		n, err := conn.Read(in)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if n < 12 || binary.BigEndian.Uint16(in) != id {
			continue // not our answer: a stray or spoofed packet
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(in[:n]); err != nil {
			return nil, fmt.Errorf("unpack answer: %w", err)
		}
		resp.Id = req.Id
		return resp, nil
	}
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
