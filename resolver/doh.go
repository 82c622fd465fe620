package resolver

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/policy"
)

// dohPath is the DoH endpoint; a ClientID may follow it as one more
// segment (/dns-query/{client-id}).
const dohPath = "/dns-query"

// startDoH serves DNS over HTTPS (RFC 8484) on l with HTTP/2 and HTTP/1.1.
// The handshake and the request headers must come within
// handshakeTimeout, and an idle connection is closed after
// server.tcp_idle_timeout.
func (t *TLSServer) startDoH(l net.Listener) {
	h := &http.Server{
		Handler:           t,
		TLSConfig:         t.dohConf,
		ReadHeaderTimeout: t.handshakeTimeout,
		ReadTimeout:       t.handshakeTimeout + maxQueryReadTime,
		WriteTimeout:      t.handshakeTimeout + upstreamBudget,
		IdleTimeout:       t.settings().TCPIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(handshakeLog{t}, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				t.connections("doh", 1)
			case http.StateClosed, http.StateHijacked:
				t.connections("doh", -1)
			}
		},
	}
	t.doh = append(t.doh, h)
	t.dohAddrs = append(t.dohAddrs, l.Addr())
	t.loops.Add(1)
	go func() {
		defer t.loops.Done()
		err := h.ServeTLS(&limitListener{Listener: l, t: t}, "", "")
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.fail(err)
		}
	}()
}

// maxQueryReadTime is the time a DoH client has to send its request body
// after the headers.
const maxQueryReadTime = 5 * time.Second

// limitListener resets connections beyond server.max_tcp_connections (DoH
// connections are counted on their own), like acceptTCP.
type limitListener struct {
	net.Listener
	t *TLSServer
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.t.dohActive.Add(1) > int64(l.t.settings().MaxTCPConnections) {
			l.t.dohActive.Add(-1)
			reset(c)
			l.t.srv.drop(clientAddr(c.RemoteAddr()), errTooManyConnections)
			continue
		}
		return &countedConn{Conn: l.t.proxied(c, clientAddr(c.RemoteAddr())), t: l.t}, nil
	}
}

// countedConn gives back its place when closed.
type countedConn struct {
	net.Conn
	t      *TLSServer
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.t.dohActive.Add(-1)
	}
	return c.Conn.Close()
}

// handshakeLog counts the TLS handshake errors that net/http logs.
type handshakeLog struct{ t *TLSServer }

func (h handshakeLog) Write(p []byte) (int, error) {
	msg := string(p)
	if i := strings.Index(msg, "TLS handshake error from "); i >= 0 {
		rest := msg[i+len("TLS handshake error from "):]
		addr, reason, _ := strings.Cut(rest, ": ")
		host, _, _ := net.SplitHostPort(addr)
		ip, _ := netipParse(host)
		h.t.handshakeFailed("doh", ip, errors.New(strings.TrimSpace(reason)))
		return len(p), nil
	}
	h.t.log.Debug("doh server", "msg", strings.TrimSpace(msg))
	return len(p), nil
}

// ServeHTTP answers RFC 8484 requests: GET with the query in the dns
// parameter (base64url) and POST with an application/dns-message body, on
// /dns-query and /dns-query/{client-id}.
func (t *TLSServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clientID := ""
	switch {
	case r.URL.Path == dohPath:
	case strings.HasPrefix(r.URL.Path, dohPath+"/"):
		clientID = strings.ToLower(r.URL.Path[len(dohPath)+1:])
		if !config.ClientIDRE.MatchString(clientID) {
			http.Error(w, "malformed ClientID: 1 to 63 of a-z, 0-9 and '-'", http.StatusBadRequest)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	var query []byte
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query().Get("dns")
		if q == "" {
			http.Error(w, "missing dns parameter", http.StatusBadRequest)
			return
		}
		var err error
		if query, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "=")); err != nil {
			http.Error(w, "dns parameter is not base64url", http.StatusBadRequest)
			return
		}
	case http.MethodPost:
		ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || ct != "application/dns-message" {
			http.Error(w, "Content-Type must be application/dns-message", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxQuerySize+1))
		if err != nil {
			http.Error(w, "reading the body", http.StatusBadRequest)
			return
		}
		if len(body) > maxQuerySize {
			http.Error(w, "query larger than 4096 bytes", http.StatusRequestEntityTooLarge)
			return
		}
		query = body
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(query) > maxQuerySize {
		http.Error(w, "query larger than 4096 bytes", http.StatusRequestEntityTooLarge)
		return
	}
	client, _ := netipParseAddrPort(r.RemoteAddr)
	if clientID == "" && r.TLS != nil {
		clientID, _ = sniClientID(r.TLS.ServerName, t.cfg.ServerName)
	}
	var reply []byte
	ew := &encWriter{
		local:  localAddr(r),
		remote: remoteAddr(r.RemoteAddr),
		id:     policy.Identity{ClientID: clientID, CertNames: certNames(r.TLS)},
		send:   func(b []byte) error { reply = bytes.Clone(b); return nil },
	}
	if err := checkPacket(query); err != nil {
		t.srv.drop(client, err)
		http.Error(w, "malformed DNS query", http.StatusBadRequest)
		return
	}
	if !t.query("doh", query, client, ew) {
		http.Error(w, "malformed DNS query", http.StatusBadRequest)
		return
	}
	if reply == nil {
		http.Error(w, "no answer", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/dns-message")
	h.Set("Content-Length", strconv.Itoa(len(reply)))
	if ttl, ok := dnswire.MinTTL(reply); ok {
		h.Set("Cache-Control", "max-age="+strconv.FormatUint(uint64(ttl), 10))
	}
	w.Write(reply)
}

func netipParse(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

func netipParseAddrPort(s string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr().Unmap(), err
}

// remoteAddr is the client's address of an HTTP request as a net.Addr.
func remoteAddr(s string) net.Addr {
	ap, _ := netip.ParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

// localAddr is the address a request came to.
func localAddr(r *http.Request) net.Addr {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a
	}
	return &net.TCPAddr{}
}
