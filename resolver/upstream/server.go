package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
)

// Server is one upstream resolver.
type Server interface {
	// Exchange sends req and returns the answer, whose ID is req's. It
	// returns promptly when ctx is done. It may be called concurrently, but
	// not with the same req: packing a message with EDNS writes its OPT
	// record.
	Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error)
	// Name is the server as configured; it labels metrics.
	Name() string
	// CloseIdleConnections closes the connections that carry no query.
	// Connections in use are closed once they are idle.
	CloseIdleConnections()
}

// newServer makes the Server of one configured upstream. roots are the
// certificate authorities DoT and DoH servers are verified against (nil:
// the system's).
func newServer(s config.UpstreamServer, roots *x509.CertPool, st *settings) (Server, error) {
	switch s.Proto {
	case config.ProtoDNS:
		return newPlain(s, st), nil
	case config.ProtoTLS:
		return newDoT(s, tlsConfig(roots, s.ServerName), st), nil
	case config.ProtoHTTPS:
		return newDoH(s, tlsConfig(roots, s.ServerName), st), nil
	}
	return nil, fmt.Errorf("upstream %s: unknown protocol %q", s.Raw, s.Proto)
}

// rootCAs returns the system's certificate pool plus the certificates of
// caFile, or nil (the system pool) when caFile is "".
func rootCAs(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	data, err := config.ReadCAFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("upstream.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("upstream.ca_file: %s: no PEM certificate in the file", caFile)
	}
	return pool, nil
}

// tlsConfig is the client TLS configuration of a DoT or DoH server: TLS 1.2
// or later, the server verified against roots for serverName, and session
// resumption so a redial is cheap.
func tlsConfig(roots *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		RootCAs:            roots,
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
}

// pack packs req with its message ID replaced by id, after a two-byte
// length prefix (the framing of TCP and TLS, RFC 1035 4.2.2). req is not
// modified. The message alone is buf[2:].
func pack(req *dns.Msg, id uint16) (buf []byte, err error) {
	buf = make([]byte, 2+req.Len())
	wire, err := req.PackBuffer(buf[2:])
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	if len(wire) > len(buf)-2 || &wire[0] != &buf[2] {
		// PackBuffer needed more room than Len promised and allocated.
		buf = append(buf[:2], wire...)
	}
	buf = buf[:2+len(wire)]
	binary.BigEndian.PutUint16(buf, uint16(len(wire)))
	binary.BigEndian.PutUint16(buf[2:], id)
	return buf, nil
}
