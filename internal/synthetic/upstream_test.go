package synthetic

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUpstreamStopStart: the upstream answers with AddrOf and the TTL it was started with, is silent when
// stopped, and answers again on the same port.
func TestUpstreamStopStart(t *testing.T) {
	u, err := Start(5)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Stop()
	ask := func() (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion("n1.soak.test.", dns.TypeA)
		c := &dns.Client{Timeout: 300 * time.Millisecond}
		r, _, err := c.Exchange(m, u.Addr)
		return r, err
	}
	r, err := ask()
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("running: %v %v", r, err)
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || a.Hdr.Ttl != 5 || a.A.String() != AddrOf("N1.soak.test.", false).String() {
		t.Errorf("answer %v, want %s with TTL 5", r.Answer[0], AddrOf("n1.soak.test.", false))
	}
	u.Stop()
	if _, err := ask(); err == nil {
		t.Fatal("answered while stopped")
	}
	if err := u.Restart(); err != nil {
		t.Fatal(err)
	}
	if r, err := ask(); err != nil || len(r.Answer) != 1 {
		t.Fatalf("restarted: %v %v", r, err)
	}
}
