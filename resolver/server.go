package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/resolver/ratelimit"
)

// Limits of the server that are not configuration keys. Each bounds memory
// or time that a client, or a flood of them, could otherwise take.
const (
	// maxUDPInFlight bounds the UDP queries being answered at once by the
	// full pipeline, each in a goroutine of its own (about 10 KiB each):
	// those the fast path does not answer in the reading goroutine, cache
	// misses above all. A packet that arrives beyond it is dropped and
	// counted: the client retries, and memory stays bounded when the
	// upstream is slow and queries pile up.
	maxUDPInFlight = 10000
	// maxTCPInFlight bounds the queries of one TCP connection being
	// answered at once (RFC 7766, 6.2.1.1: pipelined queries are answered
	// concurrently); the connection is not read while they are.
	maxTCPInFlight = 16
	// maxQuerySize is the largest query read: a longer UDP datagram is cut
	// and then fails to parse, a longer TCP message is not read (the
	// connection is closed). Queries are far smaller (RFC 8467 pads them to
	// 128-byte blocks); the bound keeps a connection's buffer small.
	maxQuerySize = 4096
	// rateLimitEntries is the number of clients the rate limiter remembers
	// (16 bytes each); see package ratelimit for what happens beyond.
	rateLimitEntries = 1 << 16
	// shutdownDrain is how long Shutdown waits, once its grace is over
	// and the queries' context cancelled, for their SERVFAIL replies to be
	// written before it closes the sockets.
	shutdownDrain = time.Second
)

// Server serves a Handler over UDP and TCP on every listen address. It owns
// the sockets and everything before a request reaches the Handler: which
// packets are dropped, rate limiting, and the bounds on connections,
// timeouts and queries in flight.
//
// Only server.listen is read at Start. The other [server] settings
// (rate_limit, tcp_idle_timeout, max_tcp_connections) are read from the
// Handler's policy for each packet or connection, so a reload changes them.
type Server struct {
	// ctx is the parent of every query's context, cancelled by Shutdown
	// when its grace ends (stop): a query waiting for an upstream then
	// gets SERVFAIL at once instead of outliving the shutdown.
	ctx     context.Context
	stop    context.CancelFunc
	handler *Handler
	log     *slog.Logger
	limiter *ratelimit.Limiter
	// now is the rate limiter's clock: time.Now, or a test's.
	now func() time.Time

	// Limits, the constants above; tests lower them.
	udpPlaces      places // UDP queries being answered
	maxTCPInFlight int

	udp     []udpSocket // the first socket of each listen address
	udpMore []udpSocket // the others (server.udp_sockets), in listen order
	tcp     []net.Listener

	tcpActive atomic.Int64
	bufs      sync.Pool // *[]byte of maxQuerySize

	// mu guards closing and conns. A connection's goroutine sets its read
	// deadline under mu, so that Shutdown's deadline in the past, which
	// wakes idle connections, is never overwritten.
	mu        sync.Mutex
	closing   bool
	conns     map[net.Conn]*tcpConn
	perClient map[netip.Prefix]int // open TCP connections by clientKey
	stopped   atomic.Bool          // closing, for loops that do not take mu

	loops   sync.WaitGroup // read and accept loops
	serving sync.WaitGroup // queries and connections being served
	errs    chan error

	// queries counts the queries received (after checkPacket) on
	// transport_queries_total; nil: not counted.
	queries atomic.Pointer[plainQueries]
}

// plainQueries are the transport_queries_total counters of UDP and TCP.
type plainQueries struct{ udp, tcp prometheus.Counter }

// CountTransports counts the UDP and TCP queries received on m's
// transport_queries_total.
func (s *Server) CountTransports(m *metrics.Transport) {
	s.queries.Store(&plainQueries{udp: m.Queries.WithLabelValues("udp"), tcp: m.Queries.WithLabelValues("tcp")})
}

// NewServer returns a server for h; Start binds and serves.
func NewServer(h *Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ctx:            h.ctx, // until Start
		stop:           func() {},
		handler:        h,
		log:            log,
		limiter:        ratelimit.New(rateLimitEntries),
		now:            time.Now,
		maxTCPInFlight: maxTCPInFlight,
		conns:          map[net.Conn]*tcpConn{},
		perClient:      map[netip.Prefix]int{},
		errs:           make(chan error, 1),
	}
	s.udpPlaces.max.Store(maxUDPInFlight)
	s.bufs.New = func() any {
		b := make([]byte, maxQuerySize)
		return &b
	}
	return s
}

// Start binds UDP and TCP on every address of cfg.Listen (the same port for
// both, also when the port is 0) and starts serving. Binding errors are
// returned before anything is served. The queries' contexts derive from
// ctx: when it is done, or when Shutdown's grace ends, a query still
// waiting for an upstream is answered SERVFAIL.
func (s *Server) Start(ctx context.Context, cfg config.Server) error {
	s.ctx, s.stop = context.WithCancel(ctx)
	procs := runtime.GOMAXPROCS(0)
	sockets := cfg.UDPSockets
	if sockets <= 0 {
		sockets = procs
	}
	if !reusePortSupported {
		sockets = 1
	}
	for _, addr := range cfg.Listen {
		us, l, err := bindPair(ctx, addr, sockets)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		s.udp = append(s.udp, us[0])
		s.udpMore = append(s.udpMore, us[1:]...)
		s.tcp = append(s.tcp, l)
	}
	// GOMAXPROCS read loops per address in all, at least one per socket:
	// each reads, answers what the fast path answers and sends, with no
	// handoff to another goroutine.
	readers := max(1, (procs+sockets-1)/sockets)
	for i := range s.udp {
		group := append([]udpSocket{s.udp[i]}, s.udpMore[i*(sockets-1):(i+1)*(sockets-1)]...)
		s.loops.Add(len(group)*readers + 1)
		for _, u := range group {
			for range readers {
				go s.serveUDP(u)
			}
		}
		go s.acceptTCP(s.tcp[i])
		s.log.Info("listening", "udp", s.udp[i].conn.LocalAddr().String(), "udp_sockets", len(group), "tcp", s.tcp[i].Addr().String())
	}
	return nil
}

// allow reports whether a query from client is within server.rate_limit,
// and charges it to the client's bucket.
func (s *Server) allow(client netip.Addr) bool {
	rate := s.settings().RateLimit
	return rate <= 0 || s.limiter.Allow(client, rate, s.now())
}

// settings returns the [server] section of the policy in use.
func (s *Server) settings() *config.Server {
	return &s.handler.State().Policy.Config.Server
}

// Err returns a channel that receives an error if a listener fails.
func (s *Server) Err() <-chan error { return s.errs }

// fail reports a listener's failure on Err.
func (s *Server) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// UDPAddrs returns the bound UDP addresses, in listen order.
func (s *Server) UDPAddrs() []net.Addr {
	var out []net.Addr
	for _, u := range s.udp {
		out = append(out, u.conn.LocalAddr())
	}
	return out
}

// Shutdown stops accepting queries, waits until the queries in flight are
// answered (or ctx is done), and closes the sockets. Idle TCP connections
// are closed at once; a connection whose query is being answered is closed
// after its reply. When ctx is done first, the queries still waiting for
// an upstream are cancelled: they are answered SERVFAIL, for up to
// shutdownDrain, before the sockets close.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.stop()
	s.mu.Lock()
	s.closing = true
	s.stopped.Store(true)
	past := time.Unix(1, 0)
	for _, u := range s.udp {
		u.conn.SetReadDeadline(past) // wakes the read loops
	}
	for _, u := range s.udpMore {
		u.conn.SetReadDeadline(past)
	}
	for _, l := range s.tcp {
		l.Close()
	}
	for c := range s.conns {
		c.SetReadDeadline(past)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.loops.Wait()
		s.serving.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.stop()
		t := time.NewTimer(shutdownDrain)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return err
}

func (s *Server) closeListeners() {
	for _, u := range s.udp {
		u.conn.Close()
	}
	for _, u := range s.udpMore {
		u.conn.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
}

// bindPair binds UDP and TCP on the same address: sockets UDP sockets,
// with SO_REUSEPORT when there are several, so that the kernel spreads the
// clients over them. With port 0 it picks a port free for both. On a
// wildcard address the UDP sockets report each packet's destination
// address, so that replies leave from the address the query was sent to
// on a host with several.
func bindPair(ctx context.Context, addr string, sockets int) ([]udpSocket, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	ip, _ := netip.ParseAddr(host)
	sessions := host == "" || ip.IsUnspecified()
	var lc net.ListenConfig
	if sockets > 1 {
		lc.Control = reusePort
	}
	bind := func(addr string) (udpSocket, error) {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return udpSocket{}, err
		}
		u := udpSocket{conn: pc.(*net.UDPConn), sessions: sessions}
		if u.sessions {
			if err := reportDestination(u.conn); err != nil {
				u.conn.Close()
				return udpSocket{}, err
			}
		}
		return u, nil
	}
	for attempt := 0; ; attempt++ {
		first, err := bind(addr)
		if err != nil {
			return nil, nil, err
		}
		bound := net.JoinHostPort(host, strconv.Itoa(first.conn.LocalAddr().(*net.UDPAddr).Port))
		l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", bound)
		if err != nil {
			first.conn.Close()
			if port != "0" || attempt >= 10 {
				return nil, nil, err
			}
			continue
		}
		us := []udpSocket{first}
		for len(us) < sockets {
			u, err := bind(bound)
			if err != nil {
				for _, u := range us {
					u.conn.Close()
				}
				l.Close()
				return nil, nil, fmt.Errorf("UDP socket %d of %d (server.udp_sockets): %w", len(us)+1, sockets, err)
			}
			us = append(us, u)
		}
		return us, l, nil
	}
}

// reportDestination asks for the destination address and interface of each
// packet (IP_PKTINFO, IPV6_RECVPKTINFO), which dns.WriteToSessionUDP uses as
// the reply's source. One of the two families may fail.
func reportDestination(conn *net.UDPConn) error {
	err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	if err4 != nil && err6 != nil {
		return fmt.Errorf("destination address of packets: %w", errors.Join(err4, err6))
	}
	return nil
}

// retryable reports whether a read or accept error is passing (a full file
// table, a connection aborted before it was accepted), so the loop goes on.
func retryable(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
