package resolver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/proxyproto"
)

// tlsConfig is the config of the encrypted transport tests: tiktok blocked
// for everyone but the ClientID officer-017 and the certificate
// phone-1.devices.test (a require_cert group).
const tlsConfig = `
[server]
listen = ["127.0.0.1:0"]
allow_clients = ["127.0.0.0/8", "::1/128"]

[server.tls]
cert_file = %q
key_file = %q
server_name = "dns.test"
dot_listen = ["127.0.0.1:0"]
doh_listen = ["127.0.0.1:0"]
doq_listen = ["127.0.0.1:0"]
client_ca_file = %q

[upstream]
servers = [%q]
timeout = "500ms"

[blocking]
lists = []
block = ["tiktok"]

[[group]]
name = "investigators"
client_ids = ["officer-017"]
allow = ["tiktok"]

[[group]]
name = "certified"
client_certs = ["phone-1.devices.test"]
require_cert = true
allow = ["tiktok"]

[metrics]
listen = ""
`

// tlsEnv is a resolver with its encrypted listeners.
type tlsEnv struct {
	*env
	tls      *TLSServer
	ca       *dnstest.CA // of the server and the client certificates
	certFile string
	keyFile  string
	metrics  *metrics.Transport
}

func startTLSEnv(t testing.TB) *tlsEnv {
	t.Helper()
	return startTLSEnvWith(t, nil)
}

// startTLSEnvWith is startTLSEnv with adjust called on the TLS server
// before it starts (to lower its limits); adjust may be nil.
func startTLSEnvWith(t testing.TB, adjust func(*TLSServer)) *tlsEnv {
	t.Helper()
	return startTLSEnvConf(t, nil, adjust)
}

// startTLSEnvConf is startTLSEnvWith with edit applied to the config text
// first; edit may be nil.
func startTLSEnvConf(t testing.TB, edit func(string) string, adjust func(*TLSServer)) *tlsEnv {
	t.Helper()
	ca := dnstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := dnstest.WritePair(t, dir, ca.Issue(t, "dns.test", "*.dns.test", "127.0.0.1"))
	up := dnstest.NewUpstream(t, upstreamRecords...)
	cfgText := fmt.Sprintf(tlsConfig, certFile, keyFile, ca.WriteFile(t), up.Addr)
	if edit != nil {
		cfgText = edit(cfgText)
	}
	e := startEnvWith(t, up, cfgText)
	tm := metrics.NewTransport(e.metrics.Registry)
	e.srv.CountTransports(tm)
	ts := NewTLSServer(e.srv, tm, nil)
	if adjust != nil {
		adjust(ts)
	}
	if err := ts.Start(context.Background(), e.handler.State().Policy.Config.Server.TLS); err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
	})
	return &tlsEnv{env: e, tls: ts, ca: ca, certFile: certFile, keyFile: keyFile, metrics: tm}
}

// dialDoT connects over DoT with the given SNI and client certificate.
func (e *tlsEnv) dialDoT(t testing.TB, sni string, cert *tls.Certificate) (*dns.Conn, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: sni, NextProtos: []string{"dot"}}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", e.tls.DoTAddrs()[0].String(), conf)
	if err != nil {
		return nil, err
	}
	// With TLS 1.3 a refused client certificate shows on the first read.
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "dot" {
		t.Errorf("ALPN %q, want dot", p)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}, nil
}

// exchange sends m on c and returns the reply.
func exchange(c *dns.Conn, m *dns.Msg) (*dns.Msg, error) {
	if err := c.WriteMsg(m); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

// resolved reports whether resp is the upstream's answer for www.tiktok.com
// rather than the block answer.
func resolved(resp *dns.Msg) bool {
	return resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 1 && strings.Contains(resp.Answer[0].String(), "192.0.2.10")
}

func TestDoTIdentity(t *testing.T) {
	e := startTLSEnv(t)
	other := dnstest.NewCA(t)
	phone := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	unknownPhone := e.ca.IssueClient(t, "phone-9.devices.test", time.Now().Add(time.Hour))
	foreign := other.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	expired := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(-time.Hour))
	tests := []struct {
		name         string
		sni          string
		cert         *tls.Certificate
		wantResolved bool
		wantRefused  bool // handshake or first exchange fails
	}{
		{name: "no ClientID", sni: "dns.test"},
		{name: "ClientID in SNI", sni: "officer-017.dns.test", wantResolved: true},
		{name: "ClientID case-insensitive", sni: "OFFICER-017.dns.test", wantResolved: true},
		{name: "unknown ClientID", sni: "officer-999.dns.test"},
		{name: "malformed ClientID", sni: "bad_id.dns.test", wantRefused: true},
		{name: "two labels", sni: "a.b.dns.test", wantRefused: true},
		{name: "certificate", sni: "dns.test", cert: &phone, wantResolved: true},
		{name: "certificate beats ClientID", sni: "officer-017.dns.test", cert: &phone, wantResolved: true},
		{name: "unknown certificate", sni: "dns.test", cert: &unknownPhone},
		{name: "certificate from another CA", sni: "dns.test", cert: &foreign, wantRefused: true},
		{name: "expired certificate", sni: "dns.test", cert: &expired, wantRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.dialDoT(t, tt.sni, tt.cert)
			var resp *dns.Msg
			if err == nil {
				m := new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA)
				resp, err = exchange(c, m)
			}
			if tt.wantRefused {
				if err == nil {
					t.Fatalf("answered (%s), want the TLS handshake refused", dns.RcodeToString[resp.Rcode])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := resolved(resp); got != tt.wantResolved {
				t.Errorf("resolved = %v, want %v:\n%v", got, tt.wantResolved, resp)
			}
		})
	}
}

func TestDoTPipelinedAndPadded(t *testing.T) {
	e := startTLSEnv(t)
	c, err := e.dialDoT(t, "dns.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"www.example.test.", "www.tiktok.com.", "txt.example.test."}
	for i, n := range names {
		m := new(dns.Msg).SetQuestion(n, dns.TypeA)
		m.Id = uint16(i + 1)
		m.SetEdns0(1232, false)
		if err := c.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint16]bool{}
	for range names {
		b := make([]byte, dns.MaxMsgSize)
		n, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(b[:n]); err != nil {
			t.Fatal(err)
		}
		seen[resp.Id] = true
		if resp.IsEdns0() == nil || n%paddingBlock != 0 {
			t.Errorf("reply %d: %d bytes, want EDNS and a multiple of %d", resp.Id, n, paddingBlock)
		}
		if resp.Id == 2 {
			if resp.Rcode != dns.RcodeNameError {
				t.Errorf("www.tiktok.com: %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
			}
			if d := ede(resp); d == nil || d.InfoCode != dns.ExtendedErrorCodeBlocked {
				t.Errorf("blocked reply without EDE 15: %v", resp)
			}
		}
	}
	if len(seen) != len(names) {
		t.Errorf("replies for %v, want all of %d", seen, len(names))
	}
}

// dohClient returns an HTTP client for the DoH listener: HTTP/2 or
// HTTP/1.1, with an optional client certificate.
func (e *tlsEnv) dohClient(h2 bool, cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "dns.test"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func (e *tlsEnv) dohURL(path string) string {
	return "https://" + e.tls.DoHAddrs()[0].String() + path
}

func packQuery(t *testing.T, name string, edns bool) []byte {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, dns.TypeA)
	m.Id = 0 // RFC 8484, 4.1
	if edns {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDoH(t *testing.T) {
	e := startTLSEnv(t)
	phone := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	tests := []struct {
		name         string
		h2           bool
		post         bool
		path         string
		cert         *tls.Certificate
		wantResolved bool
	}{
		{name: "GET HTTP/2", h2: true, path: "/dns-query"},
		{name: "POST HTTP/2", h2: true, post: true, path: "/dns-query"},
		{name: "GET HTTP/1.1", path: "/dns-query"},
		{name: "POST HTTP/1.1", post: true, path: "/dns-query"},
		{name: "ClientID in path", h2: true, path: "/dns-query/officer-017", wantResolved: true},
		{name: "ClientID in path, POST HTTP/1.1", post: true, path: "/dns-query/officer-017", wantResolved: true},
		{name: "unknown ClientID", h2: true, path: "/dns-query/officer-999"},
		{name: "certificate", h2: true, path: "/dns-query", cert: &phone, wantResolved: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dohClient(tt.h2, tt.cert)
			q := packQuery(t, "www.tiktok.com.", true)
			var resp *http.Response
			var err error
			if tt.post {
				resp, err = c.Post(e.dohURL(tt.path), "application/dns-message", bytes.NewReader(q))
			} else {
				resp, err = c.Get(e.dohURL(tt.path) + "?dns=" + base64.RawURLEncoding.EncodeToString(q))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := map[bool]int{true: 2, false: 1}[tt.h2]; resp.ProtoMajor != want {
				t.Errorf("HTTP/%d, want HTTP/%d", resp.ProtoMajor, want)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/dns-message" {
				t.Fatalf("%s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
			}
			if len(body)%paddingBlock != 0 {
				t.Errorf("reply of %d bytes, want padded to %d", len(body), paddingBlock)
			}
			m := new(dns.Msg)
			if err := m.Unpack(body); err != nil {
				t.Fatal(err)
			}
			if m.Id != 0 {
				t.Errorf("ID %d, want 0", m.Id)
			}
			if got := resolved(m); got != tt.wantResolved {
				t.Errorf("resolved = %v, want %v:\n%v", got, tt.wantResolved, m)
			}
			cc := resp.Header.Get("Cache-Control")
			if tt.wantResolved && cc != "max-age=300" && cc != "max-age=299" {
				t.Errorf("Cache-Control %q, want max-age=300", cc)
			}
			if !tt.wantResolved && !strings.HasPrefix(cc, "max-age=") {
				t.Errorf("Cache-Control %q, want max-age from the block answer", cc)
			}
		})
	}
}

func TestDoHErrors(t *testing.T) {
	e := startTLSEnv(t)
	c := e.dohClient(true, nil)
	q := packQuery(t, "www.example.test.", false)
	bad := append([]byte{}, q...)
	bad[2] |= 0x80 // a response
	do := func(method, path, ctype string, body []byte) int {
		t.Helper()
		req, err := http.NewRequest(method, e.dohURL(path), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name, method, path, ctype string
		body                      []byte
		want                      int
	}{
		{"GET without dns", "GET", "/dns-query", "", nil, 400},
		{"GET not base64url", "GET", "/dns-query?dns=***", "", nil, 400},
		{"GET padded base64url", "GET", "/dns-query?dns=" + base64.URLEncoding.EncodeToString(q), "", nil, 200},
		{"GET malformed message", "GET", "/dns-query?dns=" + b64(q[:5]), "", nil, 400},
		{"GET a response", "GET", "/dns-query?dns=" + b64(bad), "", nil, 400},
		{"POST wrong type", "POST", "/dns-query", "application/json", q, 415},
		{"POST no type", "POST", "/dns-query", "", q, 415},
		{"POST too large", "POST", "/dns-query", "application/dns-message", make([]byte, 5000), 413},
		{"PUT", "PUT", "/dns-query", "application/dns-message", q, 405},
		{"malformed ClientID", "GET", "/dns-query/bad_id?dns=" + b64(q), "", nil, 400},
		{"ClientID with a slash", "GET", "/dns-query/a/b?dns=" + b64(q), "", nil, 400},
		{"other path", "GET", "/other?dns=" + b64(q), "", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := do(tt.method, tt.path, tt.ctype, tt.body); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTLSCertificateReload(t *testing.T) {
	e := startTLSEnvWith(t, func(ts *TLSServer) { ts.certEvery = 0 })
	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", e.tls.DoTAddrs()[0].String(), &tls.Config{RootCAs: e.ca.Pool(), ServerName: "dns.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	// A client that stays connected across the rotation.
	kept, err := e.dialDoT(t, "dns.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := serial()
	dir := t.TempDir()
	newCert, newKey := dnstest.WritePair(t, dir, e.ca.Issue(t, "dns.test", "*.dns.test"))
	later := time.Now().Add(time.Minute)
	replace := func(src, dst string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		later = later.Add(time.Second)
		os.Chtimes(dst, later, later)
	}
	replace(newCert, e.certFile)
	replace(newKey, e.keyFile)
	after := serial()
	if after == before {
		t.Fatalf("serial %s after rotation, want a new certificate", after)
	}
	if _, err := exchange(kept, new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)); err != nil {
		t.Errorf("connection open across the rotation: %v", err)
	}
	// A broken pair keeps the certificate in use.
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate"), 0o600)
	replace(filepath.Join(dir, "junk.pem"), e.certFile)
	if got := serial(); got != after {
		t.Errorf("serial %s after a broken rotation, want %s kept", got, after)
	}
	leaf, _ := x509.ParseCertificate(e.tls.certs.cert.Certificate[0])
	if got := testutil.ToFloat64(e.metrics.CertExpiry); got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want %d", got, leaf.NotAfter.Unix())
	}
}

func TestTLSHandshakeTimeoutAndMetrics(t *testing.T) {
	// A client that connects and sends nothing is cut off, and plain DNS
	// goes on meanwhile.
	e := startTLSEnvWith(t, func(ts *TLSServer) { ts.handshakeTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", e.tls.DoTAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := e.ask(t, "udp", "127.0.0.1", new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("plain DNS: %s", dns.RcodeToString[resp.Rcode])
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("silent TLS client not cut off: %v", err)
	}
	dc, err := e.dialDoT(t, "dns.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(dc, new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := testutil.ToFloat64(e.metrics.HandshakeErrors.WithLabelValues("dot", "timeout"))
		if got == 1 || time.Now().After(deadline) {
			if got != 1 {
				t.Errorf("handshake timeouts counted %v, want 1", got)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp := e.ask(t, "tcp", "127.0.0.1", new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("plain DNS over TCP: %s", dns.RcodeToString[resp.Rcode])
	}
	for _, tr := range []string{"udp", "tcp", "dot"} {
		if got := testutil.ToFloat64(e.metrics.Queries.WithLabelValues(tr)); got != 1 {
			t.Errorf("%s queries %v, want 1", tr, got)
		}
	}
	if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("dot")); got != 1 {
		t.Errorf("dot connections %v, want 1", got)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// dialDoQ connects over DoQ with the given SNI and client certificate.
func (e *tlsEnv) dialDoQ(t *testing.T, sni string, cert *tls.Certificate) (*quic.Conn, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: sni, NextProtos: []string{"doq"}}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, e.tls.DoQAddrs()[0].String(), conf, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	return c, nil
}

// doqExchange sends m on a new stream of c (RFC 9250, 4.2) and returns the
// reply.
func doqExchange(c *quic.Conn, m *dns.Msg) (*dns.Msg, error) {
	resp, _, err := doqExchangeRaw(c, m)
	return resp, err
}

// doqExchangeRaw is doqExchange that also returns the reply's wire length.
func doqExchangeRaw(c *quic.Conn, m *dns.Msg) (*dns.Msg, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, 0, err
	}
	s.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := m.Pack()
	if err != nil {
		return nil, 0, err
	}
	if _, err := s.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)); err != nil {
		return nil, 0, err
	}
	s.Close() // one query a stream: the client's side ends here
	raw, err := io.ReadAll(s)
	if err != nil {
		return nil, 0, err
	}
	if len(raw) < 2 || int(raw[0])<<8|int(raw[1]) != len(raw)-2 {
		return nil, 0, fmt.Errorf("doq reply of %d bytes: bad length prefix", len(raw))
	}
	resp := new(dns.Msg)
	return resp, len(raw) - 2, resp.Unpack(raw[2:])
}

func TestDoQ(t *testing.T) {
	e := startTLSEnv(t)
	phone := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	foreign := dnstest.NewCA(t).IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	tests := []struct {
		name         string
		sni          string
		cert         *tls.Certificate
		wantResolved bool
		wantRefused  bool
	}{
		{name: "no ClientID", sni: "dns.test"},
		{name: "ClientID in SNI", sni: "officer-017.dns.test", wantResolved: true},
		{name: "unknown ClientID", sni: "officer-999.dns.test"},
		{name: "malformed ClientID", sni: "bad_id.dns.test", wantRefused: true},
		{name: "certificate", sni: "dns.test", cert: &phone, wantResolved: true},
		{name: "certificate from another CA", sni: "dns.test", cert: &foreign, wantRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.dialDoQ(t, tt.sni, tt.cert)
			var resp *dns.Msg
			if err == nil {
				m := new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA)
				m.Id = 0
				resp, err = doqExchange(c, m)
			}
			if tt.wantRefused {
				if err == nil {
					t.Fatalf("answered (%s), want the handshake refused", dns.RcodeToString[resp.Rcode])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id != 0 {
				t.Errorf("reply ID %d, want 0", resp.Id)
			}
			if got := resolved(resp); got != tt.wantResolved {
				t.Errorf("resolved = %v, want %v:\n%v", got, tt.wantResolved, resp)
			}
		})
	}

	t.Run("streams on one connection, padded", func(t *testing.T) {
		c, err := e.dialDoQ(t, "dns.test", nil)
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().TLS.NegotiatedProtocol; p != "doq" {
			t.Errorf("ALPN %q, want doq", p)
		}
		for _, name := range []string{"www.example.test.", "txt.example.test."} {
			m := new(dns.Msg).SetQuestion(name, dns.TypeA)
			m.Id = 0
			m.SetEdns0(1232, false)
			resp, n, err := doqExchangeRaw(c, m)
			if err != nil {
				t.Fatal(err)
			}
			if resp.IsEdns0() == nil || n%paddingBlock != 0 {
				t.Errorf("%s: reply of %d bytes, want EDNS and a multiple of %d", name, n, paddingBlock)
			}
		}
	})

	t.Run("nonzero ID closes the connection", func(t *testing.T) {
		c, err := e.dialDoQ(t, "dns.test", nil)
		if err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)
		m.Id = 4711
		if _, err := doqExchange(c, m); err == nil {
			t.Fatal("answered a query with ID 4711")
		}
		select {
		case <-c.Context().Done():
		case <-time.After(2 * time.Second):
			t.Fatal("connection still open after a nonzero ID")
		}
		var ae *quic.ApplicationError
		if err := context.Cause(c.Context()); !errors.As(err, &ae) || ae.ErrorCode != 0x2 {
			t.Errorf("closed with %v, want DOQ_PROTOCOL_ERROR (0x2)", err)
		}
	})

	if got := testutil.ToFloat64(e.metrics.Queries.WithLabelValues("doq")); got < 5 {
		t.Errorf("doq queries %v, want at least 5", got)
	}
}

func TestTLSExpiredServerCertificate(t *testing.T) {
	e := startTLSEnvWith(t, func(ts *TLSServer) { ts.certEvery = 0 })
	expired := e.ca.IssueServer(t, time.Now().Add(-time.Hour), "dns.test", "*.dns.test", "127.0.0.1")
	cert, key := dnstest.WritePair(t, t.TempDir(), expired)
	later := time.Now().Add(time.Minute)
	for src, dst := range map[string]string{cert: e.certFile, key: e.keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(dst, later, later)
	}
	wantExpired := func(t *testing.T, err error) {
		t.Helper()
		var ce *tls.CertificateVerificationError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "expired") {
			t.Errorf("err = %v, want the expired certificate refused", err)
		}
	}
	t.Run("dot", func(t *testing.T) {
		_, err := e.dialDoT(t, "dns.test", nil)
		wantExpired(t, err)
	})
	t.Run("doq", func(t *testing.T) {
		_, err := e.dialDoQ(t, "dns.test", nil)
		wantExpired(t, err)
	})
	t.Run("doh", func(t *testing.T) {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), ServerName: "dns.test"}}}
		_, err := client.Get("https://" + e.tls.DoHAddrs()[0].String() + "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ")
		wantExpired(t, err)
	})
}

func TestTLSHandshakeFlood(t *testing.T) {
	// Many clients that open a DoT connection, send the start of a TLS
	// record and stall hold no worker: plain DNS is answered meanwhile,
	// and the stalled handshakes are cut off.
	const flood = 200
	e := startTLSEnvWith(t, func(ts *TLSServer) { ts.handshakeTimeout = time.Second })
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.Dial("tcp", e.tls.DoTAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}) // a ClientHello record header, no body
		conns = append(conns, c)
	}
	for i := range 20 {
		netw := "udp"
		if i%4 == 0 {
			netw = "tcp"
		}
		m := new(dns.Msg).SetQuestion(fmt.Sprintf("n%d.example.test.", i), dns.TypeA)
		if resp := e.ask(t, netw, "127.0.0.1", m); resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			t.Errorf("plain DNS over %s during the flood: %s", netw, dns.RcodeToString[resp.Rcode])
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cut := testutil.ToFloat64(e.metrics.HandshakeErrors.WithLabelValues("dot", "timeout"))
		open := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("dot"))
		if cut > 0 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the handshake timeout: %v cut off, %v still open", cut, open)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The listener serves again.
	c, err := e.dialDoT(t, "dns.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(c, new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
}

func TestProxyProtocol(t *testing.T) {
	// 127.0.0.2 is the balancer; the group of 127.0.9.0/24 may use
	// tiktok, so a resolved answer shows the header's address was used.
	e := startTLSEnvConf(t, func(s string) string {
		s = strings.Replace(s, "[server.tls]\n", "[server.tls]\nproxy_protocol = [\"127.0.0.2/32\"]\n", 1)
		return strings.Replace(s, "[metrics]", "[[group]]\nname = \"behind-lb\"\nclients = [\"127.0.9.0/24\"]\nallow = [\"tiktok\"]\n\n[metrics]", 1)
	}, nil)
	device := netip.MustParseAddrPort("127.0.9.5:40000")
	// dial connects from local and sends a PROXY header for src first
	// (none when src is not valid).
	dial := func(local, addr string, src netip.AddrPort) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		if src.IsValid() {
			dst := netip.MustParseAddrPort(addr)
			if _, err := c.Write(proxyproto.Append(nil, src, dst)); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	clientConf := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "dns.test"}
	dot := func(local string, src netip.AddrPort) (*dns.Msg, error) {
		c, err := dial(local, e.tls.DoTAddrs()[0].String(), src)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		tc := tls.Client(c, clientConf)
		tc.SetDeadline(time.Now().Add(2 * time.Second))
		return exchange(&dns.Conn{Conn: tc}, new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA))
	}
	plainTCP := func(local string, src netip.AddrPort) (*dns.Msg, error) {
		c, err := dial(local, e.addr, src)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		return exchange(&dns.Conn{Conn: c}, new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA))
	}
	doh := func(local string, src netip.AddrPort) (*dns.Msg, error) {
		tr := &http.Transport{TLSClientConfig: clientConf, ForceAttemptHTTP2: true,
			DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return dial(local, addr, src) }}
		defer tr.CloseIdleConnections()
		b, _ := new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA).Pack()
		url := "https://" + e.tls.DoHAddrs()[0].String() + "/dns-query?dns=" + base64.RawURLEncoding.EncodeToString(b)
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		m := new(dns.Msg)
		return m, m.Unpack(body)
	}
	tests := []struct {
		name         string
		local        string
		src          netip.AddrPort
		wantResolved bool
		wantRefused  bool
	}{
		{name: "header from the balancer", local: "127.0.0.2", src: device, wantResolved: true},
		{name: "balancer without a header", local: "127.0.0.2", wantRefused: true},
		{name: "header from another source", local: "127.0.0.1", src: device, wantRefused: true},
		{name: "direct client", local: "127.0.0.1"},
	}
	for _, tr := range []struct {
		name string
		ask  func(string, netip.AddrPort) (*dns.Msg, error)
	}{{"tcp", plainTCP}, {"dot", dot}, {"doh", doh}} {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				resp, err := tr.ask(tt.local, tt.src)
				if tt.wantRefused {
					if err == nil {
						t.Fatalf("answered (%s), want the connection refused", dns.RcodeToString[resp.Rcode])
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := resolved(resp); got != tt.wantResolved {
					t.Errorf("resolved = %v, want %v:\n%v", got, tt.wantResolved, resp)
				}
			})
		}
	}
}

func TestDoQBounds(t *testing.T) {
	e := startTLSEnvConf(t, func(s string) string {
		return strings.Replace(s, "[server]\n", "[server]\ntcp_idle_timeout = \"300ms\"\n", 1)
	}, func(ts *TLSServer) { ts.maxInFlight = 2 })

	t.Run("streams per connection", func(t *testing.T) {
		c, err := e.dialDoQ(t, "dns.test", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Two streams held open (no query sent yet) take both places.
		for range 2 {
			s, err := c.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte{0}) // half a length prefix: the stream exists for the server
		}
		var limit *quic.StreamLimitReachedError
		if _, err := c.OpenStream(); !errors.As(err, &limit) {
			t.Errorf("third stream: %v, want the stream limit", err)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		c, err := e.dialDoQ(t, "dns.test", nil)
		if err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)
		m.Id = 0
		if _, err := doqExchange(c, m); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("doq")); got < 1 {
			t.Fatalf("doq connections %v after a query, want the open one counted", got)
		}
		// The server ends it silently (a QUIC idle timeout sends nothing;
		// quic-go clients wait at least 5 s themselves): watch the gauge.
		deadline := time.Now().Add(3 * time.Second)
		for testutil.ToFloat64(e.metrics.Connections.WithLabelValues("doq")) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("idle DoQ connection still open after 3s with tcp_idle_timeout 300ms")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestTLSShutdownEndsUpstreamWaits: a DoT or DoQ query waiting for an
// upstream that never answers is answered SERVFAIL when the TLS server's
// Shutdown grace ends, long before upstream.timeout.
func TestTLSShutdownEndsUpstreamWaits(t *testing.T) {
	for _, transport := range []string{"dot", "doq"} {
		t.Run(transport, func(t *testing.T) {
			slow := func(cfg string) string {
				return strings.Replace(cfg, `timeout = "500ms"`, `timeout = "25s"`, 1)
			}
			e := startTLSEnvConf(t, slow, nil)
			e.upstream.SetSilent(true)
			q := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
			var ask func() (*dns.Msg, error)
			switch transport {
			case "dot":
				c, err := e.dialDoT(t, "dns.test", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				ask = func() (*dns.Msg, error) { return exchange(c, q) }
			case "doq":
				c, err := e.dialDoQ(t, "dns.test", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseWithError(0, "")
				q.Id = 0 // RFC 9250, 4.2.1
				ask = func() (*dns.Msg, error) { return doqExchange(c, q) }
			}
			dnstest.ServfailAtShutdown(t, e.upstream, e.tls.Shutdown, ask)
		})
	}
}

// TestEncryptedFastPathAnswersAsServeDNS: on the encrypted transports,
// blocked names and cache hits are answered by the fast path for the
// device's identity (none, ClientID, certificate), and the reply is the
// full pipeline's, padded alike (RFC 8467).
func TestEncryptedFastPathAnswersAsServeDNS(t *testing.T) {
	e := startTLSEnv(t)
	client := netip.MustParseAddr("127.0.0.1")
	identities := []struct {
		what string
		id   policy.Identity
	}{
		{"no identity", policy.Identity{}},
		{"ClientID", policy.Identity{ClientID: "officer-017"}},
		{"certificate", policy.Identity{CertNames: []string{"phone-1.devices.test"}}},
	}
	names := []string{"www.tiktok.com.", "WWW.TikTok.com.", "www.example.test.", "nx.example.test."}
	var sc encScratch
	fastCount := 0
	for _, who := range identities {
		for _, name := range names {
			for _, edns := range []bool{false, true} {
				what := fmt.Sprintf("%s, %s, EDNS %v", who.what, name, edns)
				req := dnstest.NewQuery(name, dns.TypeA, edns, false)
				raw, err := req.Pack()
				if err != nil {
					t.Fatal(err)
				}
				var slowBytes []byte
				w := &encWriter{remote: &net.TCPAddr{IP: client.AsSlice(), Port: 40000}, id: who.id,
					send: func(b []byte) error { slowBytes = bytes.Clone(b); return nil }}
				if !e.tls.answer("dot", raw, client, w, true) { // stores what it resolves
					t.Fatalf("%s: dropped by the full pipeline", what)
				}
				var fastBytes []byte
				id := who.id
				if !e.tls.answerFast(source{transport: "dot", id: &id}, raw, client, &sc, func(b []byte) error { fastBytes = bytes.Clone(b); return nil }) {
					t.Errorf("%s: not answered by the fast path", what)
					continue
				}
				fastCount++
				var slow, fast dns.Msg
				if err := slow.Unpack(slowBytes); err != nil {
					t.Fatal(err)
				}
				if err := fast.Unpack(fastBytes); err != nil {
					t.Fatalf("%s: fast reply: %v", what, err)
				}
				if edns && (len(fastBytes)%paddingBlock != 0 || len(slowBytes)%paddingBlock != 0) {
					t.Errorf("%s: replies of %d (fast) and %d bytes, want both padded to %d", what, len(fastBytes), len(slowBytes), paddingBlock)
				}
				if !edns && fast.IsEdns0() != nil {
					t.Errorf("%s: EDNS in the reply to a query without it", what)
				}
				stripPadding(&slow)
				stripPadding(&fast)
				if fast.String() != slow.String() {
					t.Errorf("%s: fast path\n%s\nfull pipeline\n%s", what, &fast, &slow)
				}
			}
		}
	}
	if fastCount != len(identities)*len(names)*2 {
		t.Errorf("%d queries answered by the fast path, want all %d", fastCount, len(identities)*len(names)*2)
	}
}

// stripPadding removes the padding option of m, whose length depends on
// how the rest was compressed.
func stripPadding(m *dns.Msg) {
	opt := m.IsEdns0()
	if opt == nil {
		return
	}
	kept := opt.Option[:0]
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0PADDING {
			kept = append(kept, o)
		}
	}
	opt.Option = kept
}
