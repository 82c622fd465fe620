package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// tlsName is the name in the bench's certificate and the TLS server name
// the clients ask for.
const tlsName = "dns.bench.test"

// tlsFiles are the certificate and key every server's DoT and DoH
// listeners use, and the pool a client verifies them with.
type tlsFiles struct {
	cert, key string // PEM files
	roots     *x509.CertPool
}

// writeCert writes a self-signed ECDSA P-256 certificate for tlsName and
// 127.0.0.1, valid for a day, into dir.
func writeCert(dir string) (tlsFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("certificate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: tlsName},
		DNSNames:              []string{tlsName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsFiles{}, fmt.Errorf("certificate key: %w", err)
	}
	f := tlsFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), roots: x509.NewCertPool()}
	if err := os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tlsFiles{}, err
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return tlsFiles{}, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return tlsFiles{}, err
	}
	f.roots.AddCert(c)
	return f, nil
}

// handshakeResult is what a run of the handshake client counts.
type handshakeResult struct {
	done, failed int64
	elapsed      time.Duration
	firstErr     error
}

// handshakes opens DoT connections to addr from workers goroutines for d:
// each a full TLS handshake (no session resumption, X25519 as most
// clients offer first), one query for a cached name, its answer, and
// close.
func handshakes(ctx context.Context, addr string, roots *x509.CertPool, workers int, d time.Duration) handshakeResult {
	cfg := &tls.Config{
		ServerName:       tlsName,
		RootCAs:          roots,
		NextProtos:       []string{"dot"},
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	m := new(dns.Msg)
	m.SetQuestion("n000.bench.test.", dns.TypeA)
	q, _ := m.Pack()
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	frame = append(frame, q...)

	var res handshakeResult
	var done, failed atomic.Int64
	var once sync.Once
	start := time.Now()
	end := start.Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// The clock, not ctx.Err(), ends the run: a dial after the
			// deadline fails at once, before ctx's timer has fired.
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := exchangeTLS(ctx, addr, cfg, frame); err != nil {
					if !time.Now().Before(end) || ctx.Err() != nil {
						return
					}
					failed.Add(1)
					once.Do(func() { res.firstErr = err })
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.done, res.failed = done.Load(), failed.Load()
	return res
}

// exchangeTLS makes one connection, one query and its answer.
func exchangeTLS(ctx context.Context, addr string, cfg *tls.Config, frame []byte) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var r dns.Msg
	if err := r.Unpack(b); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}
