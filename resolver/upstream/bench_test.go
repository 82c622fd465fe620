package upstream

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnstest"
)

// BenchmarkExchange measures one exchange with a loopback server over each
// protocol, on kept connections (the steady state): the overhead of DoT
// and DoH against plain UDP. The server is the same dnstest upstream for
// all four, so the differences are the protocols'.
//
//	go test -run '^$' -bench Exchange -count 5 ./resolver/upstream/
func BenchmarkExchange(b *testing.B) {
	ca := dnstest.NewCA(b)
	up := dnstest.NewUpstream(b, records...)
	dotAddr := up.StartTLS(b, ca.Issue(b, "dns.test"))
	dohSrv := up.StartHTTPS(b, ca.Issue(b, "dns.test"))
	st := defaultSettings()
	parse := func(s string) config.UpstreamServer {
		us, err := config.ParseUpstream(s)
		if err != nil {
			b.Fatal(err)
		}
		return us
	}
	plain := newPlain(parse(up.Addr), &st)
	dot := newDoT(parse("tls://"+dotAddr+"#dns.test"), tlsConfig(ca.Pool(), "dns.test"), &st)
	doh := newDoH(parse(dnstest.DoHURL(dohSrv, "dns.test")), tlsConfig(ca.Pool(), "dns.test"), &st)
	b.Cleanup(func() {
		plain.CloseIdleConnections()
		dot.CloseIdleConnections()
		doh.CloseIdleConnections()
	})
	protocols := []struct {
		name     string
		exchange func(context.Context, *dns.Msg) (*dns.Msg, error)
	}{
		{"udp", plain.exchangeUDP},
		{"tcp", plain.tcp.exchange},
		{"tls", dot.Exchange},
		{"https", doh.Exchange},
	}
	for _, p := range protocols {
		b.Run(p.name, func(b *testing.B) {
			q := query("www.example.test.")
			ctx := context.Background()
			if _, err := p.exchange(ctx, q); err != nil { // connect outside the timing
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := p.exchange(ctx, q)
				if err != nil || len(resp.Answer) != 1 {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}
