// Package upstream sends queries AppFence cannot answer itself to the
// configured upstream resolvers: it owns the protocols (plain DNS with TCP
// fallback on truncation), the choice among servers (the strategy), and
// conditional forwarding of zones to their own servers.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/metrics"
)

// Server is one upstream resolver.
type Server interface {
	// Exchange sends req and returns the answer. It returns when ctx is done.
	Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error)
	// Name is the server as configured; it labels metrics.
	Name() string
}

// ErrNoServers is returned when a pool has no server to ask.
var ErrNoServers = errors.New("upstream: no servers")

// plain is a plain-DNS upstream: UDP, and TCP when the answer is truncated.
type plain struct {
	name string
	addr string
	udp  *dns.Client
	tcp  *dns.Client
}

func newPlain(s config.UpstreamServer) *plain {
	return &plain{
		name: s.Raw,
		addr: s.Addr,
		// The timeouts are the context's; these are only a ceiling.
		udp: &dns.Client{Net: "udp", Timeout: time.Minute, UDPSize: dns.DefaultMsgSize},
		tcp: &dns.Client{Net: "tcp", Timeout: time.Minute},
	}
}

func (p *plain) Name() string { return p.name }

func (p *plain) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	resp, _, err := p.udp.ExchangeContext(ctx, req, p.addr)
	if err == nil && resp.Truncated {
		resp, _, err = p.tcp.ExchangeContext(ctx, req, p.addr)
	}
	return resp, err
}

// Pool asks a set of servers according to a strategy.
type Pool struct {
	servers []Server
	timeout time.Duration
	metrics *metrics.Metrics
}

// NewPool makes a pool of the configured servers. timeout bounds each
// attempt; m may be nil.
func NewPool(servers []config.UpstreamServer, timeout time.Duration, m *metrics.Metrics) (*Pool, error) {
	p := &Pool{timeout: timeout, metrics: m}
	for _, s := range servers {
		switch s.Proto {
		case config.ProtoDNS:
			p.servers = append(p.servers, newPlain(s))
		default:
			return nil, fmt.Errorf("upstream %s: protocol %q is not supported yet", s.Raw, s.Proto)
		}
		if m != nil {
			m.UpstreamUp.WithLabelValues(s.Raw).Set(1)
		}
	}
	if len(p.servers) == 0 {
		return nil, ErrNoServers
	}
	return p, nil
}

// Exchange asks the servers in order (failover): the next one is asked when
// a server fails, times out, or answers SERVFAIL or REFUSED. When every
// server fails, the last answer is returned if there was one, else the
// last error.
func (p *Pool) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	var (
		lastResp *dns.Msg
		lastErr  error = ErrNoServers
	)
	for _, s := range p.servers {
		if ctx.Err() != nil {
			break
		}
		resp, err := p.exchange(ctx, s, req)
		if err != nil {
			lastErr = err
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			lastResp = resp
			continue
		}
		return resp, nil
	}
	if lastResp != nil {
		return lastResp, nil
	}
	return nil, lastErr
}

// exchange makes one attempt with one server, bounded by the pool's timeout,
// checks that the answer belongs to the question, and records metrics.
func (p *Pool) exchange(ctx context.Context, s Server, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	resp, err := s.Exchange(ctx, req)
	if err == nil {
		err = checkResponse(req, resp)
	}
	if p.metrics != nil {
		p.metrics.UpstreamDuration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
		if err != nil {
			p.metrics.UpstreamErrors.WithLabelValues(s.Name(), ErrorKind(err)).Inc()
		} else {
			p.metrics.UpstreamRequests.WithLabelValues(s.Name(), dns.RcodeToString[resp.Rcode]).Inc()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", s.Name(), err)
	}
	return resp, nil
}

// ErrMismatch is returned for an answer to another question.
var ErrMismatch = errors.New("answer does not match the question")

// checkResponse rejects answers that do not answer req.
func checkResponse(req, resp *dns.Msg) error {
	if resp == nil {
		return ErrMismatch
	}
	if !resp.Response {
		return fmt.Errorf("%w: QR bit not set", ErrMismatch)
	}
	if len(req.Question) == 0 {
		return nil
	}
	if len(resp.Question) != 1 {
		// Some servers omit the question on errors such as FORMERR.
		if len(resp.Question) == 0 && resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			return nil
		}
		return fmt.Errorf("%w: %d questions", ErrMismatch, len(resp.Question))
	}
	q, r := req.Question[0], resp.Question[0]
	if q.Qtype != r.Qtype || q.Qclass != r.Qclass || !strings.EqualFold(q.Name, r.Name) {
		return fmt.Errorf("%w: %s", ErrMismatch, r.String())
	}
	return nil
}

// ErrorKind classifies an exchange error for
// appfence_upstream_errors_total: timeout, network, tls, http or other.
func ErrorKind(err error) string {
	var (
		netErr  net.Error
		opErr   *net.OpError
		httpErr *HTTPError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &httpErr):
		return "http"
	case isTLSError(err):
		return "tls"
	case errors.As(err, &opErr):
		return "network"
	}
	return "other"
}

// HTTPError is a DoH answer with an HTTP status other than 200.
type HTTPError struct {
	Status int
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP status %d", e.Status) }

func isTLSError(err error) bool {
	var (
		header   tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &header) || errors.As(err, &verify) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// Router sends each query to the pool of the most specific forward zone
// that contains the name, or to the default pool.
type Router struct {
	def   *Pool
	zones map[string]*Pool // canonical zone -> pool
}

// NewRouter builds the pools of an [upstream] section.
func NewRouter(cfg config.Upstream, m *metrics.Metrics) (*Router, error) {
	def, err := NewPool(cfg.Servers, cfg.Timeout, m)
	if err != nil {
		return nil, err
	}
	r := &Router{def: def, zones: map[string]*Pool{}}
	for _, f := range cfg.Forward {
		p, err := NewPool(f.Servers, cfg.Timeout, m)
		if err != nil {
			return nil, fmt.Errorf("forward %s: %w", strings.Join(f.Zones, ", "), err)
		}
		for _, z := range f.Zones {
			r.zones[z] = p
		}
	}
	return r, nil
}

// Pool returns the pool for a canonical name.
func (r *Router) Pool(name string) *Pool {
	if len(r.zones) > 0 {
		for s := name; ; {
			if p, ok := r.zones[s]; ok {
				return p
			}
			i := strings.IndexByte(s, '.')
			if i < 0 {
				break
			}
			s = s[i+1:]
		}
	}
	return r.def
}

// Exchange sends req, whose question has the canonical name name, to its
// pool.
func (r *Router) Exchange(ctx context.Context, req *dns.Msg, name string) (*dns.Msg, error) {
	return r.Pool(name).Exchange(ctx, req)
}
