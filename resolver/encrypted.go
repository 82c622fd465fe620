package resolver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/proxyproto"
)

// Limits of the encrypted listeners that are not configuration keys.
const (
	// tlsHandshakeTimeout bounds a TLS handshake: a client that opens a
	// connection and stalls is cut off, and holds no worker meanwhile.
	tlsHandshakeTimeout = 5 * time.Second
	// maxDoTInFlight bounds the queries of one DoT connection being
	// answered at once (RFC 7858, 3.3: queries may be pipelined).
	maxDoTInFlight = 16
	// certCheckEvery is how often the certificate files are looked at.
	certCheckEvery = time.Second
	// paddingBlock is the block length of RFC 8467's recommended padding
	// of responses.
	paddingBlock = 468
)

// TLSServer serves the encrypted transports of [server.tls]: DNS over TLS
// (dot.go), DNS over HTTPS (doh.go) and DNS over QUIC (doq.go). Every query goes through the same
// packet check, rate limit, fast path and Handler as the UDP and TCP ones
// of Server, with the client's identity (verified certificate, ClientID)
// beside its address, and its reply padded (RFC 8467).
type TLSServer struct {
	// ctx is the parent of the queries' contexts and of the handshakes,
	// cancelled by Shutdown when its grace ends (stop).
	ctx     context.Context
	stop    context.CancelFunc
	srv     *Server
	log     *slog.Logger
	metrics *metrics.Transport // nil: not counted
	cfg     config.TLS
	certs   *certReloader
	dotConf *tls.Config
	dohConf *tls.Config
	doqConf *tls.Config

	// scratch holds the *encScratch of the DoH requests and DoQ streams
	// being answered (a DoT connection has its own).
	scratch sync.Pool

	// Limits, the constants above; tests lower them.
	handshakeTimeout time.Duration
	maxInFlight      int
	certEvery        time.Duration

	dot      []net.Listener
	doh      []*http.Server
	dohAddrs []net.Addr
	doq      []*quic.Listener
	// doqTransports carry the DoQ listeners and their connections;
	// Shutdown closes them last.
	doqTransports []*quic.Transport
	doqStop       context.CancelFunc // ends the DoQ connections
	dotActive     atomic.Int64
	dohActive     atomic.Int64
	doqActive     atomic.Int64

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{} // DoT connections
	loops   sync.WaitGroup
	serving sync.WaitGroup
	errs    chan error
}

// NewTLSServer returns the encrypted listeners of s; m may be nil.
func NewTLSServer(s *Server, m *metrics.Transport, log *slog.Logger) *TLSServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &TLSServer{ctx: s.ctx, stop: func() {}, srv: s, log: log, metrics: m,
		handshakeTimeout: tlsHandshakeTimeout, maxInFlight: maxDoTInFlight, certEvery: certCheckEvery,
		conns: map[net.Conn]struct{}{}, errs: make(chan error, 1)}
	t.scratch.New = func() any { return new(encScratch) }
	return t
}

// Start loads the certificate and binds the listeners of cfg. Nothing is
// served when cfg is not enabled. The queries' contexts derive from ctx,
// as for Server.Start.
func (t *TLSServer) Start(ctx context.Context, cfg config.TLS) error {
	if !cfg.Enabled() {
		return nil
	}
	t.ctx, t.stop = context.WithCancel(ctx)
	t.cfg = cfg
	t.certs = &certReloader{certFile: cfg.CertFile, keyFile: cfg.KeyFile, log: t.log, every: t.certEvery}
	if t.metrics != nil {
		t.certs.expiry = t.metrics.CertExpiry
	}
	if err := t.certs.load(); err != nil {
		return err
	}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: t.certs.get,
	}
	if cfg.ClientCAFile != "" {
		data, err := config.ReadCAFile(cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("server.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return fmt.Errorf("server.tls.client_ca_file %s: no PEM certificate", cfg.ClientCAFile)
		}
		base.ClientCAs = pool
		base.ClientAuth = tls.VerifyClientCertIfGiven
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if _, err := sniClientID(hello.ServerName, cfg.ServerName); err != nil {
			return nil, err // a handshake failure the client sees
		}
		return nil, nil
	}
	t.dotConf = base.Clone()
	t.dotConf.NextProtos = []string{"dot"}
	t.dohConf = base.Clone()
	t.dohConf.NextProtos = []string{"h2", "http/1.1"}
	t.doqConf = base.Clone()
	t.doqConf.NextProtos = []string{"doq"}
	t.doqConf.MinVersion = tls.VersionTLS13 // QUIC is TLS 1.3 only
	for _, a := range cfg.DoTListen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.closeListeners()
			return fmt.Errorf("dot listen %s: %w", a, err)
		}
		t.dot = append(t.dot, l)
	}
	var dohListeners []net.Listener
	for _, a := range cfg.DoHListen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.closeListeners()
			for _, l := range dohListeners {
				l.Close()
			}
			return fmt.Errorf("doh listen %s: %w", a, err)
		}
		dohListeners = append(dohListeners, l)
	}
	for _, a := range cfg.DoQListen {
		l, tr, err := t.listenDoQ(a)
		if err != nil {
			t.closeListeners()
			t.closeDoQTransports()
			for _, l := range dohListeners {
				l.Close()
			}
			return err
		}
		t.doq = append(t.doq, l)
		t.doqTransports = append(t.doqTransports, tr)
	}
	doqCtx, stop := context.WithCancel(t.ctx)
	t.doqStop = stop
	for _, l := range t.doq {
		t.loops.Add(1)
		go t.acceptDoQ(doqCtx, l)
		t.log.Info("listening", "doq", l.Addr().String())
	}
	for _, l := range t.dot {
		t.loops.Add(1)
		go t.acceptDoT(l)
		t.log.Info("listening", "dot", l.Addr().String())
	}
	for _, l := range dohListeners {
		t.startDoH(l)
		t.log.Info("listening", "doh", l.Addr().String())
	}
	t.srv.handler.setDDR(ddrRecords(cfg.ServerName, t.DoTAddrs(), t.DoHAddrs(), t.DoQAddrs()))
	return nil
}

// DoTAddrs and DoHAddrs return the bound addresses, in listen order.
func (t *TLSServer) DoTAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range t.dot {
		out = append(out, l.Addr())
	}
	return out
}

// DoHAddrs returns the bound DoH addresses, in listen order.
func (t *TLSServer) DoHAddrs() []net.Addr { return t.dohAddrs }

// DoQAddrs returns the bound DoQ (UDP) addresses, in listen order.
func (t *TLSServer) DoQAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range t.doq {
		out = append(out, l.Addr())
	}
	return out
}

// Err returns a channel that receives an error if a listener fails.
func (t *TLSServer) Err() <-chan error { return t.errs }

func (t *TLSServer) fail(err error) {
	select {
	case t.errs <- err:
	default:
	}
}

// Shutdown stops the listeners, waits for the queries in flight (or ctx)
// and closes the connections. When ctx is done first, the queries still
// waiting for an upstream are cancelled and answered SERVFAIL, for up to
// shutdownDrain.
func (t *TLSServer) Shutdown(ctx context.Context) error {
	defer t.stop()
	t.mu.Lock()
	t.closing = true
	past := time.Unix(1, 0)
	for c := range t.conns {
		c.SetReadDeadline(past)
	}
	t.mu.Unlock()
	t.closeListeners()
	t.srv.handler.setDDR(nil)
	if t.doqStop != nil {
		t.doqStop() // no new streams; those in flight are answered
	}
	var errs []error
	for _, h := range t.doh {
		if err := h.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() {
		t.loops.Wait()
		t.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
		t.stop()
		d := time.NewTimer(shutdownDrain)
		select {
		case <-done:
		case <-d.C:
		}
		d.Stop()
	}

	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	for _, h := range t.doh {
		h.Close()
	}
	t.closeDoQTransports()
	return errors.Join(errs...)
}

// shuttingDown reports whether Shutdown has begun.
func (t *TLSServer) shuttingDown() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// closeDoQTransports closes the DoQ transports, their connections and
// their sockets.
func (t *TLSServer) closeDoQTransports() {
	for _, tr := range t.doqTransports {
		tr.Close()
		tr.Conn.Close()
	}
}

func (t *TLSServer) closeListeners() {
	for _, l := range t.dot {
		l.Close()
	}
	for _, l := range t.doq {
		l.Close()
	}
}

// proxied returns c as a proxyproto.Conn when it comes from a balancer of
// server.tls.proxy_protocol (its PROXY v2 header is read on first use,
// within the handshake timeout), else c itself: from any other source a
// PROXY header is not read, and fails the TLS handshake.
func (t *TLSServer) proxied(c net.Conn, peer netip.Addr) net.Conn {
	if !proxyproto.Trusted(t.cfg.ProxyProtocol, peer) {
		return c
	}
	return proxyproto.NewConn(c, t.handshakeTimeout)
}

// clientOf returns the client's address of c: that of its PROXY header
// when it has one. A trusted balancer's connection without a valid header
// is dropped (counted and logged), and ok is false.
func (t *TLSServer) clientOf(c net.Conn) (client netip.Addr, ok bool) {
	if pc, isProxied := c.(*proxyproto.Conn); isProxied {
		if err := pc.Err(); err != nil {
			t.srv.drop(clientAddr(pc.Conn.RemoteAddr()), fmt.Errorf("%w: %w", errProxyHeader, err))
			return netip.Addr{}, false
		}
	}
	return clientAddr(c.RemoteAddr()), true
}

// errProxyHeader is a connection from a trusted balancer without a valid
// PROXY v2 header.
var errProxyHeader = errors.New("no valid proxy protocol v2 header")

// settings returns the [server] section of the policy in use.
func (t *TLSServer) settings() *config.Server { return t.srv.settings() }

// countQuery counts a query received on transport.
func (t *TLSServer) countQuery(transport string) {
	if t.metrics != nil {
		t.metrics.Queries.WithLabelValues(transport).Inc()
	}
}

// connections adds n to the open connections of transport.
func (t *TLSServer) connections(transport string, n float64) {
	if t.metrics != nil {
		t.metrics.Connections.WithLabelValues(transport).Add(n)
	}
}

// handshakeFailed counts and logs a failed handshake.
func (t *TLSServer) handshakeFailed(transport string, client netip.Addr, err error) {
	reason := handshakeReason(err)
	if t.metrics != nil {
		t.metrics.HandshakeErrors.WithLabelValues(transport, reason).Inc()
	}
	t.log.Debug("tls handshake failed", "transport", transport, "client", client.String(), "reason", reason, "err", err)
}

// handshakeReason classifies a handshake error for the reason label.
func handshakeReason(err error) string {
	var ne net.Error
	var ce *tls.CertificateVerificationError
	var ae tls.AlertError
	msg := err.Error()
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded), strings.Contains(msg, "timeout"):
		return "timeout"
	case errors.As(err, &ce), strings.Contains(msg, "certificate"):
		return "certificate"
	case errors.As(err, &ae), strings.Contains(msg, "tls:"), errors.Is(err, errClientID):
		return "protocol"
	}
	return "other"
}

// admit counts a query received on transport and charges it to client's
// rate limit, reporting whether it is within it (server.rate_limit).
func (t *TLSServer) admit(transport string, client netip.Addr) bool {
	t.countQuery(transport)
	return t.srv.allow(client)
}

// encScratch is the memory the fast path of an encrypted transport reuses
// from one query to the next: the fast path's own, and the reply.
type encScratch struct {
	fast fastScratch
	out  []byte
}

// answerFast answers the query in raw from client, received as src says
// (transport, device identity, addresses) and admitted, from the fast path
// when it can (serveWire: the same decision and answer as the full
// pipeline, for the device's identity), padded as RFC 8467 asks, and hands
// the reply to send. It reports false, having answered and counted
// nothing, when the query must take answer.
func (t *TLSServer) answerFast(src source, raw []byte, client netip.Addr, sc *encScratch, send func([]byte) error) bool {
	reply, ok := t.srv.handler.serveWire(raw, client, src, sc.out[:0], &sc.fast)
	if !ok {
		return false
	}
	sc.out = dnswire.AppendPadding(reply, paddingBlock)
	send(sc.out) // a failed send ends the connection or the stream
	return true
}

// query answers the query in raw from client, received on transport and
// checked (checkPacket), in the caller's goroutine, as DoH and DoQ do:
// admitted, then from the fast path with a pooled scratch when it can,
// else through answer with w. It reports false when the packet was
// dropped unanswered.
func (t *TLSServer) query(transport string, raw []byte, client netip.Addr, w *encWriter) bool {
	allowed := t.admit(transport, client)
	if allowed {
		sc := t.scratch.Get().(*encScratch)
		fast := t.answerFast(source{transport: transport, id: &w.id, remote: addrPort(w.remote), local: w.local}, raw, client, sc, w.send)
		t.scratch.Put(sc)
		if fast {
			return true
		}
	}
	return t.answer(transport, raw, client, w, allowed)
}

// answer answers the query in raw from client, received on transport
// (the transport has run checkPacket and admit, whose verdict allowed is),
// through the same path as a TCP query: parse, then the Handler, with w
// carrying the client's identity, or REFUSED over the rate limit. It
// reports false when the packet was dropped unanswered.
func (t *TLSServer) answer(transport string, raw []byte, client netip.Addr, w *encWriter, allowed bool) bool {
	s := t.srv
	req := s.request(raw, client)
	if req == nil {
		return false
	}
	w.req, w.proto = req, transport
	if !allowed {
		s.handler.refuse(w, req, client)
		return true
	}
	s.handler.serve(t.ctx, w, req)
	return true
}

// errClientID is a ClientID that is not [a-z0-9-]{1,63}.
var errClientID = errors.New("malformed ClientID")

// sniClientID returns the ClientID of a TLS server name: the one label in
// front of serverName, or "" when sni is not under serverName. A name
// under serverName that is not one valid label is an error.
func sniClientID(sni, serverName string) (string, error) {
	if serverName == "" || sni == "" {
		return "", nil
	}
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	prefix, ok := strings.CutSuffix(sni, "."+serverName)
	if !ok {
		return "", nil
	}
	if !config.ClientIDRE.MatchString(prefix) {
		return "", fmt.Errorf("%w %q in server name", errClientID, prefix)
	}
	return prefix, nil
}

// certNames returns the names a verified client certificate is known by in
// client_certs: its DNS SANs and CN (lower case), and "sha256:" with the
// hex SHA-256 of its DER encoding. Nil without a verified certificate.
func certNames(cs *tls.ConnectionState) []string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	names := []string{"sha256:" + hex.EncodeToString(sum[:])}
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	if cn := leaf.Subject.CommonName; cn != "" {
		names = append(names, strings.ToLower(strings.TrimSuffix(cn, ".")))
	}
	return names
}

// encWriter is the dns.ResponseWriter of a query on an encrypted
// transport: it carries the client's identity to the Handler, pads the
// reply (RFC 8467) and hands its bytes to send.
type encWriter struct {
	noTSIG
	local, remote net.Addr
	id            policy.Identity
	req           *dns.Msg
	proto         string // the transport: "dot", "doh" or "doq"
	send          func([]byte) error
}

func (w *encWriter) identity() *policy.Identity { return &w.id }
func (w *encWriter) transport() string          { return w.proto }

func (w *encWriter) WriteMsg(m *dns.Msg) error {
	b, err := padded(m)
	if err != nil {
		return err
	}
	return w.send(b)
}

// Write sends a reply already packed (from the cache), padded when it
// carries EDNS.
func (w *encWriter) Write(b []byte) (int, error) {
	msg := append(make([]byte, 0, len(b)+paddingBlock), b...) // b is the caller's
	if err := w.send(dnswire.AppendPadding(msg, paddingBlock)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *encWriter) LocalAddr() net.Addr  { return w.local }
func (w *encWriter) RemoteAddr() net.Addr { return w.remote }
func (w *encWriter) Close() error         { return nil }

// padded packs m, padded to a multiple of paddingBlock bytes with an EDNS
// padding option (RFC 7830) when it carries EDNS: RFC 8467's Block-Length
// Padding for responses, which hides the answer's size from an observer
// of the encrypted stream.
func padded(m *dns.Msg) ([]byte, error) {
	opt := m.IsEdns0()
	if opt == nil {
		return m.Pack()
	}
	kept := opt.Option[:0]
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0PADDING {
			kept = append(kept, o)
		}
	}
	opt.Option = kept
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	n := (paddingBlock - (len(b)+4)%paddingBlock) % paddingBlock
	if len(b)+4+n > dns.MaxMsgSize {
		return b, nil
	}
	opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, n)})
	return m.Pack()
}

// certReloader serves the certificate of cert_file and key_file, and
// re-reads them when either file's modification time changes (rotation by
// certbot or cert-manager). A new pair that fails to load is logged and
// the previous one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	every             time.Duration
	expiry            interface{ Set(float64) } // nil: not reported

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
	checked         time.Time
}

// load reads the pair; the first load must succeed.
func (r *certReloader) load() error {
	cm, km, err := r.mtimes()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("server.tls: %w", err)
	}
	r.install(&c, cm, km)
	return nil
}

func (r *certReloader) mtimes() (time.Time, time.Time, error) {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("server.tls.cert_file: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("server.tls.key_file: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

func (r *certReloader) install(c *tls.Certificate, cm, km time.Time) {
	r.cert, r.certMod, r.keyMod, r.checked = c, cm, km, time.Now()
	if c.Leaf != nil && r.expiry != nil {
		r.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
	}
}

// get is tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		cm, km, err := r.mtimes()
		if err != nil {
			r.log.Error("tls certificate: keeping the one in use", "err", err)
		} else if !cm.Equal(r.certMod) || !km.Equal(r.keyMod) {
			c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
			if err != nil {
				// Mark the times seen so that the error is logged once per
				// change, not on every handshake.
				r.certMod, r.keyMod = cm, km
				r.log.Error("tls certificate changed but does not load: keeping the one in use", "cert_file", r.certFile, "err", err)
			} else {
				r.install(&c, cm, km)
				r.log.Info("tls certificate reloaded", "cert_file", r.certFile, "expires", c.Leaf.NotAfter)
			}
		}
	}
	return r.cert, nil
}
