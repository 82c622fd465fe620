package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
)

// mediaType is the content type of DoH requests and answers (RFC 8484 6).
const mediaType = "application/dns-message"

// doh is a DNS-over-HTTPS upstream (RFC 8484): each query is a POST of the
// message with ID 0 (the RFC's advice, so HTTP caches can share answers),
// over kept HTTP/2 connections where the server offers HTTP/2 and HTTP/1.1
// keep-alive otherwise. The address dialled is the URL's host, or the IP
// address written after '#'.
type doh struct {
	name      string
	url       string
	client    *http.Client
	transport *http.Transport
}

func newDoH(s config.UpstreamServer, cfg *tls.Config, st *settings) *doh {
	var dialer net.Dialer
	t := &http.Transport{
		// DNS goes straight to the server: no HTTP proxy from the
		// environment, as for every other upstream.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, s.Addr)
		},
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     st.httpIdle,
		HTTP2: &http.HTTP2Config{
			// Find dead connections: ping after this long without a frame.
			SendPingTimeout: st.httpIdle / 2,
			PingTimeout:     5 * time.Second,
		},
	}
	return &doh{
		name:      s.Raw,
		url:       s.URL,
		transport: t,
		client: &http.Client{
			Transport: t,
			// A DoH server that redirects is misconfigured: report its status.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (d *doh) Name() string { return d.name }

func (d *doh) CloseIdleConnections() { d.transport.CloseIdleConnections() }

func (d *doh) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	buf, err := pack(req, 0)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(buf[2:]))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", mediaType)
	hreq.Header.Set("Accept", mediaType)
	hresp, err := d.client.Do(hreq)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(hresp.Body, 4096)) // so the connection is reused
		return nil, &HTTPError{Status: hresp.StatusCode}
	}
	if ct, _, _ := mime.ParseMediaType(hresp.Header.Get("Content-Type")); ct != mediaType {
		return nil, &HTTPError{Status: hresp.StatusCode, Msg: fmt.Sprintf("content type %q, want %s", ct, mediaType)}
	}
	body, err := io.ReadAll(io.LimitReader(hresp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(body) > dns.MaxMsgSize {
		return nil, &HTTPError{Status: hresp.StatusCode, Msg: "answer larger than a DNS message"}
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(body); err != nil {
		return nil, fmt.Errorf("unpack answer: %w", err)
	}
	// The HTTP exchange, not the ID (0 both ways), pairs the answer with
	// the query.
	resp.Id = req.Id
	return resp, nil
}
