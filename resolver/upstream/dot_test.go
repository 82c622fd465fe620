package upstream

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

// dotRouter starts a DoT listener on up with a certificate for names issued
// by a private CA, and returns a Router over server (with %s for the
// listener's address) that trusts the CA through upstream.ca_file.
func dotRouter(t *testing.T, m *metrics.Metrics, up *dnstest.Upstream, server string, names []string, opts ...Option) *Router {
	t.Helper()
	ca := dnstest.NewCA(t)
	addr := up.StartTLS(t, ca.Issue(t, names...))
	cfg := upstreamConfig(t, "failover", fmt.Sprintf(server, addr))
	cfg.CAFile = ca.WriteFile(t)
	return routerFor(t, m, cfg, opts...)
}

func TestDoT(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	m := metrics.New("test")
	r := dotRouter(t, m, up, "tls://%s#dns.test", []string{"dns.test"})
	for _, name := range []string{"www.example.test.", "a.example.test.", "b.example.test."} {
		mustExchange(t, r, name)
	}
	if tls, _ := up.CountEncrypted(); tls != 3 || up.Total() != 3 {
		t.Errorf("upstream got %d TLS queries of %d, want 3 of 3", tls, up.Total())
	}
	q := up.Queries()
	if q[0].Remote != q[1].Remote || q[1].Remote != q[2].Remote {
		t.Errorf("queries came from %s, %s, %s: want one reused connection", q[0].Remote, q[1].Remote, q[2].Remote)
	}
	if v := metric(t, m, "appfence_upstream_requests_total", "rcode", "NOERROR"); v != 3 {
		t.Errorf("appfence_upstream_requests_total{rcode=NOERROR} = %v, want 3", v)
	}
}

func TestDoTServerNameIsTheAddress(t *testing.T) {
	// Without "#name", the certificate must be for the IP address.
	up := dnstest.NewUpstream(t, records...)
	r := dotRouter(t, nil, up, "tls://%s", []string{"127.0.0.1"})
	mustExchange(t, r, "www.example.test.")
}

func TestDoTReconnectsWhenServerCloses(t *testing.T) {
	// The server closes each connection after two queries (RFC 7766 lets
	// it): the queries after that go on new connections, without errors.
	up := dnstest.NewUpstream(t, records...)
	ca := dnstest.NewCA(t)
	addr := up.StartTLS(t, ca.Issue(t, "dns.test"), func(s *dns.Server) { s.MaxTCPQueries = 2 })
	cfg := upstreamConfig(t, "failover", "tls://"+addr+"#dns.test")
	cfg.CAFile = ca.WriteFile(t)
	m := metrics.New("test")
	r := routerFor(t, m, cfg)
	for range 7 {
		mustExchange(t, r, "www.example.test.")
	}
	conns := map[string]int{}
	for _, q := range up.Queries() {
		conns[q.Remote]++
	}
	if len(conns) < 4 {
		t.Errorf("7 queries on %d connections %v, want at least 4 (two queries each)", len(conns), conns)
	}
	for _, k := range ErrorKinds {
		if v := metric(t, m, "appfence_upstream_errors_total", "kind", k); v != 0 {
			t.Errorf("appfence_upstream_errors_total{kind=%s} = %v, want 0", k, v)
		}
	}
}

func TestDoTPipelinesConcurrentQueries(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	r := dotRouter(t, nil, up, "tls://%s#dns.test", []string{"dns.test"}, func(s *settings) { s.streamConns = 1 })
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			q := query("a.example.test.")
			resp, err := r.Exchange(context.Background(), q, "a.example.test")
			if err != nil || resp.Id != q.Id || answerIP(resp) != "192.0.2.11" {
				t.Errorf("answer %v, %v", resp, err)
			}
		})
	}
	wg.Wait()
	conns := map[string]int{}
	for _, q := range up.Queries() {
		conns[q.Remote]++
	}
	if len(conns) != 1 || up.Total() != 20 {
		t.Errorf("%d queries on connections %v, want 20 on one", up.Total(), conns)
	}
}
