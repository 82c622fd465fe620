package upstream

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
)

// dot is a DNS-over-TLS upstream (RFC 7858): queries pipelined over kept
// TLS connections, the server's certificate verified for its name
// ("tls://192.0.2.1:853#dns.example" verifies dns.example).
type dot struct {
	name string
	tls  *streamPool
}

func newDoT(s config.UpstreamServer, cfg *tls.Config, st *settings) *dot {
	dialer := &tls.Dialer{Config: cfg}
	return &dot{name: s.Raw, tls: newStreamPool(func(ctx context.Context) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", s.Addr)
	}, st)}
}

func (d *dot) Name() string { return d.name }

func (d *dot) CloseIdleConnections() { d.tls.closeIdle() }

func (d *dot) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	return d.tls.exchange(ctx, req)
}
