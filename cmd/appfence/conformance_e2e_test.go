package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// silentFor starts an upstream on 127.0.0.1 that never answers queries for
// name (canonical, with the trailing dot), as when a name's authoritative
// servers are down, and answers every other name with 192.0.2.1.
func silentFor(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if len(req.Question) != 1 || dns.CanonicalName(req.Question[0].Name) == name {
			return
		}
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.RecursionAvailable = true
		q := req.Question[0]
		if q.Qtype == dns.TypeA {
			resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)}}
		}
		w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestReadyzWhileOneNameNeverAnswers runs the binary with an upstream that
// never answers one name and answers every other: a client sending 100
// queries for that name gets SERVFAIL for each, /readyz stays 200 all
// along (SPEC, Readiness; issue 13), and other names are still resolved.
func TestReadyzWhileOneNameNeverAnswers(t *testing.T) {
	bin := buildBinary(t)
	up := silentFor(t, "never.example.test.")
	port, mport := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]
[upstream]
servers = ["%s"]
timeout = "200ms"
[metrics]
listen = "127.0.0.1:%d"
`, port, up, mport)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startServe(t, bin, cfg, addr)
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", mport)
	if code, body := httpGet(t, readyz); code != 200 {
		t.Fatalf("/readyz before: %d %q", code, body)
	}
	const workers, each = 10, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery("never.example.test.", dns.TypeA, true, false))
				switch {
				case err != nil:
					errs <- err
				case resp.Rcode != dns.RcodeServerFailure:
					errs <- fmt.Errorf("%s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	polls := 0
	for running := true; running; polls++ {
		select {
		case <-done:
			running = false
		case <-time.After(20 * time.Millisecond):
		}
		if code, body := httpGet(t, readyz); code != 200 {
			t.Fatalf("/readyz while a name times out (poll %d): %d %q, want 200", polls+1, code, body)
		}
	}
	t.Logf("/readyz polled %d times while %d queries timed out", polls, workers*each)
	close(errs)
	for err := range errs {
		t.Errorf("query for the silent name: %v", err)
	}
	if code, body := httpGet(t, readyz); code != 200 {
		t.Errorf("/readyz after %d timeouts: %d %q, want 200", workers*each, code, body)
	}
	resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("another name after the timeouts: %v %v, want its answer", resp, err)
	}
}
