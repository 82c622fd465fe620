package dnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// CA is a certificate authority made for one test: it issues server
// certificates for the test's TLS listeners, and its certificate is what a
// client must trust (a private CA, like an agency's).
type CA struct {
	Cert *x509.Certificate
	// PEM is Cert, PEM-encoded: the content of a ca_file.
	PEM []byte
	key *ecdsa.PrivateKey
}

// NewCA makes a CA with a fresh P-256 key.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "AppFence test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Issue returns a server certificate for names: DNS names, or IP addresses
// ("127.0.0.1").
func (ca *CA) Issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return ca.IssueServer(t, time.Now().Add(24*time.Hour), names...)
}

// IssueServer is Issue with a certificate valid until notAfter (in the
// past for an expired one).
func (ca *CA) IssueServer(t testing.TB, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		NotBefore:   notAfter.Add(-48 * time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.sign(t, tmpl)
}

// sign gives tmpl a fresh P-256 key and a random serial number and signs
// it with the CA.
func (ca *CA) sign(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// WriteFile writes the CA certificate to a PEM file in a temporary
// directory and returns its path.
func (ca *CA) WriteFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// StartTLS starts a DNS-over-TLS listener (RFC 7858) on 127.0.0.1 that
// answers like the upstream's UDP and TCP listeners, and returns its
// address. configure, when given, adjusts the server before it starts (for
// example MaxTCPQueries). It stops with the upstream.
func (u *Upstream) StartTLS(t testing.TB, cert tls.Certificate, configure ...func(*dns.Server)) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: l, Net: "tcp-tls", Handler: u.handler("tls")}
	for _, f := range configure {
		f(srv)
	}
	srv = start(t, srv)
	u.mu.Lock()
	u.extra = append(u.extra, srv)
	u.mu.Unlock()
	return l.Addr().String()
}

// StartHTTPS starts a DNS-over-HTTPS server (RFC 8484) on 127.0.0.1 with
// HTTP/2 enabled, serving DoHHandler, and returns it; its URL plus
// "/dns-query" is the DoH endpoint (see DoHURL). It stops when the test
// ends.
func (u *Upstream) StartHTTPS(t testing.TB, cert tls.Certificate) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(u.DoHHandler())
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are what some tests want
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// SetHTTPStatus makes DoH requests fail with this HTTP status; 0 restores
// normal answers.
func (u *Upstream) SetHTTPStatus(code int) { u.httpStatus.Store(int32(code)) }

// DoHHandler answers RFC 8484 requests: POST with an application/dns-message
// body, or GET with the message in the dns parameter (base64url). The
// query is answered from the upstream's zone and recorded with Net "https"
// and the request's HTTP protocol version in Query.HTTPProto.
func (u *Upstream) DoHHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := u.httpStatus.Load(); code != 0 {
			http.Error(w, http.StatusText(int(code)), int(code))
			return
		}
		var wire []byte
		var err error
		switch r.Method {
		case http.MethodPost:
			if r.Header.Get("Content-Type") != "application/dns-message" {
				http.Error(w, "want application/dns-message", http.StatusUnsupportedMediaType)
				return
			}
			wire, err = io.ReadAll(io.LimitReader(r.Body, 65535))
		case http.MethodGet:
			wire, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		req := new(dns.Msg)
		if err == nil {
			err = req.Unpack(wire)
		}
		if err != nil {
			http.Error(w, "bad DNS message: "+err.Error(), http.StatusBadRequest)
			return
		}
		hw := &httpWriter{local: r.Context().Value(http.LocalAddrContextKey).(net.Addr), remote: r.RemoteAddr, proto: r.Proto}
		u.serve("https", hw, req)
		if hw.msg == nil {
			// Silent: hold the request until the client gives up.
			<-r.Context().Done()
			return
		}
		out, err := hw.msg.Pack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/dns-message")
		w.Write(out)
	})
}

// httpWriter is the dns.ResponseWriter of a DoH request: it keeps the
// answer for the HTTP handler to send.
type httpWriter struct {
	local  net.Addr
	remote string
	proto  string
	msg    *dns.Msg
}

func (w *httpWriter) LocalAddr() net.Addr { return w.local }
func (w *httpWriter) RemoteAddr() net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", w.remote)
	return a
}
func (w *httpWriter) WriteMsg(m *dns.Msg) error { w.msg = m; return nil }
func (w *httpWriter) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	w.msg = m
	return len(b), nil
}
func (w *httpWriter) Close() error        { return nil }
func (w *httpWriter) TsigStatus() error   { return nil }
func (w *httpWriter) TsigTimersOnly(bool) {}
func (w *httpWriter) Hijack()             {}

// DoHURL returns the upstream.servers entry of a DoH server started by
// StartHTTPS whose certificate is for name: "https://name:port/dns-query"
// with "#127.0.0.1", the address to dial instead of resolving name.
func DoHURL(srv *httptest.Server, name string) string {
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "https://" + net.JoinHostPort(name, port) + "/dns-query#127.0.0.1"
}

// IssueClient returns a client certificate (for mutual TLS) with common
// name cn and the DNS names, valid until notAfter.
func (ca *CA) IssueClient(t testing.TB, cn string, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    names,
		NotBefore:   time.Now().Add(-48 * time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.sign(t, tmpl)
}

// WritePair writes a certificate and its key as PEM files in dir and
// returns their paths.
func WritePair(t testing.TB, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
