package upstream

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

func TestDoH(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	ca := dnstest.NewCA(t)
	srv := up.StartHTTPS(t, ca.Issue(t, "dns.test"))
	// dns.test resolves nowhere: the "#127.0.0.1" address is what is dialled.
	cfg := upstreamConfig(t, "failover", dnstest.DoHURL(srv, "dns.test"))
	cfg.CAFile = ca.WriteFile(t)
	m := metrics.New("test")
	r := routerFor(t, m, cfg)
	for _, name := range []string{"www.example.test.", "a.example.test.", "b.example.test."} {
		mustExchange(t, r, name)
	}
	q := up.Queries()
	if _, https := up.CountEncrypted(); https != 3 || len(q) != 3 {
		t.Fatalf("upstream got %d DoH queries of %d, want 3 of 3", https, len(q))
	}
	for i, q := range q {
		if q.HTTPProto != "HTTP/2.0" {
			t.Errorf("query %d over %s, want HTTP/2.0", i, q.HTTPProto)
		}
		if q.Msg.Id != 0 {
			t.Errorf("query %d has ID %d on the wire, want 0 (RFC 8484 4.1)", i, q.Msg.Id)
		}
		if q.Remote != up.Queries()[0].Remote {
			t.Errorf("query %d from %s, first from %s: want one kept connection", i, q.Remote, up.Queries()[0].Remote)
		}
	}
	if v := metric(t, m, "appfence_upstream_duration_seconds", "upstream", cfg.Servers[0].Raw); v != 3 {
		t.Errorf("appfence_upstream_duration_seconds count = %v, want 3", v)
	}
}

func TestDoHOverHTTP1KeepsConnection(t *testing.T) {
	// A server without HTTP/2: HTTP/1.1 with keep-alive.
	up := dnstest.NewUpstream(t, records...)
	ca := dnstest.NewCA(t)
	srv := httptest.NewUnstartedServer(up.DoHHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "dns.test")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := upstreamConfig(t, "failover", dnstest.DoHURL(srv, "dns.test"))
	cfg.CAFile = ca.WriteFile(t)
	r := routerFor(t, nil, cfg)
	mustExchange(t, r, "a.example.test.")
	mustExchange(t, r, "b.example.test.")
	q := up.Queries()
	if len(q) != 2 || q[0].HTTPProto != "HTTP/1.1" || q[0].Remote != q[1].Remote {
		t.Errorf("queries %+v, want two over one HTTP/1.1 connection", q)
	}
}
