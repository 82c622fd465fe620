package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"

	"github.com/appfence/appfence/config"
)

// Server serves a Handler over UDP and TCP on every listen address.
type Server struct {
	handler *Handler
	log     *slog.Logger
	servers []*dns.Server
	udp     []net.PacketConn
	tcp     []net.Listener
	wg      sync.WaitGroup
	errs    chan error
}

// NewServer returns a server for h; Start binds and serves.
func NewServer(h *Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{handler: h, log: log, errs: make(chan error, 1)}
}

// Start binds UDP and TCP on every address of cfg.Listen (the same port for
// both, also when the port is 0) and starts serving. Binding errors are
// returned before anything is served.
func (s *Server) Start(cfg config.Server) error {
	for _, addr := range cfg.Listen {
		pc, l, err := bindPair(addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		s.udp = append(s.udp, pc)
		s.tcp = append(s.tcp, netutil.LimitListener(l, cfg.MaxTCPConnections))
	}
	idle := cfg.TCPIdleTimeout
	for i := range s.udp {
		s.serve(&dns.Server{PacketConn: s.udp[i], Handler: s.handler})
		s.serve(&dns.Server{Listener: s.tcp[i], Handler: s.handler, ReadTimeout: idle,
			IdleTimeout: func() time.Duration { return idle }})
		s.log.Info("listening", "udp", s.udp[i].LocalAddr().String(), "tcp", s.tcp[i].Addr().String())
	}
	return nil
}

func (s *Server) serve(srv *dns.Server) {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.ActivateAndServe(); err != nil {
			select {
			case s.errs <- err:
			default:
			}
		}
	}()
	<-started
}

// Err returns a channel that receives an error if a listener fails.
func (s *Server) Err() <-chan error { return s.errs }

// UDPAddrs returns the bound UDP addresses, in listen order.
func (s *Server) UDPAddrs() []net.Addr {
	var out []net.Addr
	for _, pc := range s.udp {
		out = append(out, pc.LocalAddr())
	}
	return out
}

// Shutdown stops accepting queries, waits until the queries in flight are
// answered (or ctx is done), and closes the sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ShutdownContext(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

func (s *Server) closeListeners() {
	for _, pc := range s.udp {
		pc.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
}

// bindPair binds UDP and TCP on the same address. With port 0 it picks a
// port free for both.
func bindPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := addr
		if port == "0" {
			tcpAddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		l, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt >= 10 {
			return nil, nil, err
		}
	}
}
