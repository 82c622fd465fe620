package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
)

// ErrNoServers is returned when a pool has no server to ask.
var ErrNoServers = errors.New("upstream: no servers")

// ErrMismatch is returned for an answer to another question.
var ErrMismatch = errors.New("answer does not match the question")

// HTTPError is a DoH answer that is not a DNS message: an HTTP status other
// than 200, or a body of the wrong type or size.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("HTTP status %d: %s", e.Status, e.Msg)
	}
	return fmt.Sprintf("HTTP status %d", e.Status)
}

// checkResponse rejects answers that do not answer req: not a response,
// another ID, or another question.
func checkResponse(req, resp *dns.Msg) error {
	if resp == nil {
		return ErrMismatch
	}
	if !resp.Response {
		return fmt.Errorf("%w: QR bit not set", ErrMismatch)
	}
	if resp.Id != req.Id {
		return fmt.Errorf("%w: ID %d, want %d", ErrMismatch, resp.Id, req.Id)
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
	if q.Qtype != r.Qtype || q.Qclass != r.Qclass || !dnsname.Equal(q.Name, r.Name) {
		return fmt.Errorf("%w: %s", ErrMismatch, r.String())
	}
	return nil
}

// Error kinds, the values of the kind label of
// appfence_upstream_errors_total.
const (
	KindTimeout = "timeout" // no answer in time
	KindNetwork = "network" // refused, reset, unreachable, closed
	KindTLS     = "tls"     // handshake or certificate failure
	KindHTTP    = "http"    // DoH: HTTP status or body not a DNS answer
	KindOther   = "other"   // malformed or mismatched answers, anything else
)

// ErrorKinds lists every error kind.
var ErrorKinds = []string{KindTimeout, KindNetwork, KindTLS, KindHTTP, KindOther}

// ErrorKind classifies an exchange error for
// appfence_upstream_errors_total.
func ErrorKind(err error) string {
	var (
		netErr  net.Error
		opErr   *net.OpError
		httpErr *HTTPError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &httpErr):
		return KindHTTP
	case isTLSError(err), errors.As(err, &opErr) && opErr.Op == "remote error":
		// "remote error" is an alert the server sent during the handshake.
		return KindTLS
	case errors.As(err, &opErr), errors.Is(err, errConnLost), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return KindNetwork
	}
	return KindOther
}

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
