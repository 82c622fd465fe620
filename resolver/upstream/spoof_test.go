package upstream

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/metrics"
)

// TestSpoofedUDPAnswersIgnored (issue 17 item 5): before the real answer,
// the server's address sends an answer with another ID, one with the right
// ID for another question, one with the right ID and QR clear, and one
// with the right ID that is not a DNS message; another address sends a
// perfect forgery. None ends the wait: the query gets the real answer, and
// the four that reached the socket are counted in
// appfence_upstream_mismatched_responses_total (the kernel drops the one
// from another address: the socket is connected).
func TestSpoofedUDPAnswersIgnored(t *testing.T) {
	spoofer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spoofer.Close() })
	server := rawUDPServerFrom(t, func(raw []byte, from net.Addr) [][]byte {
		q := new(dns.Msg)
		if q.Unpack(raw) != nil {
			return nil
		}
		pack := func(m *dns.Msg) []byte {
			b, _ := m.Pack()
			return b
		}
		forged := answerFor(q)
		forged.Answer[0].(*dns.A).A = net.IPv4(203, 0, 113, 66)
		spoofer.WriteTo(pack(forged), from) // from another address
		wrongID := answerFor(q)
		wrongID.Id++
		otherQ := answerFor(q)
		otherQ.Question[0].Name = "other.example.test."
		query := answerFor(q)
		query.Response = false
		garbage := append([]byte{raw[0], raw[1], 0x80, 0}, 0, 1, 0, 0, 0, 0, 0, 0, 0xff)
		return [][]byte{pack(wrongID), pack(otherQ), pack(query), garbage, pack(answerFor(q))}
	})
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{server})
	resp := mustExchange(t, r, "www.example.test.")
	if got := answerIP(resp); got != "192.0.2."+strconv.Itoa(len("www.example.test.")) {
		t.Fatalf("answer %s: a spoofed answer was taken", got)
	}
	if v := metric(t, m, "appfence_upstream_mismatched_responses_total", "upstream", server); v != 4 {
		t.Errorf("appfence_upstream_mismatched_responses_total = %v, want 4", v)
	}
	if v := metric(t, m, "appfence_upstream_errors_total", "upstream", server, "kind", KindOther); v != 0 {
		t.Errorf("%v errors counted: a mismatched answer is no failure of the server", v)
	}
}

// TestUDPSourcePortsRandom (issue 17 item 5, issue 18): UDP queries come
// from a few sockets that are renewed after udpMaxUses queries, each on a
// port drawn from 1024-65535, not from the kernel's narrower ephemeral
// range: over many queries the source port keeps changing.
func TestUDPSourcePortsRandom(t *testing.T) {
	const n = 40 * udpMaxUses
	var mu sync.Mutex
	perPort := map[int]int{}
	server := rawUDPServerFrom(t, func(q []byte, from net.Addr) [][]byte {
		mu.Lock()
		perPort[from.(*net.UDPAddr).Port]++
		mu.Unlock()
		m := new(dns.Msg)
		if m.Unpack(q) != nil {
			return nil
		}
		b, _ := answerFor(m).Pack()
		return [][]byte{b}
	})
	r := newRouter(t, nil, "failover", []string{server})
	for i := range n {
		mustExchange(t, r, "p"+strconv.Itoa(i%50)+".example.test.")
	}
	mu.Lock()
	defer mu.Unlock()
	lo, hi := ephemeralRange(t)
	outside := 0
	for p, queries := range perPort {
		if p < minPort {
			t.Errorf("source port %d is privileged", p)
		}
		if p < lo || p > hi {
			outside++
		}
		// A later socket may draw a port again: rarely twice.
		if queries > 2*udpMaxUses {
			t.Errorf("%d queries from port %d: sockets are not renewed", queries, p)
		}
	}
	if len(perPort) < n/udpMaxUses-1 {
		t.Errorf("%d distinct source ports in %d queries, want about %d", len(perPort), n, n/udpMaxUses)
	}
	// With ports drawn from 1024-65535 and the kernel's 32768-60999, the
	// chance that none of 39 falls outside is below 1e-13.
	if outside == 0 {
		t.Errorf("every source port is in the kernel's ephemeral range %d-%d", lo, hi)
	}
}

// TestUDPSocketsRenewedByAge: a socket older than its age limit takes no
// more queries, however few it has served; one past the limit in the
// pool's clock gets a socket on a new port.
func TestUDPSocketsRenewedByAge(t *testing.T) {
	ports := make(chan int, 16)
	server := rawUDPServerFrom(t, func(q []byte, from net.Addr) [][]byte {
		ports <- from.(*net.UDPAddr).Port
		m := new(dns.Msg)
		if m.Unpack(q) != nil {
			return nil
		}
		b, _ := answerFor(m).Pack()
		return [][]byte{b}
	})
	us, err := config.ParseUpstream(server)
	if err != nil {
		t.Fatal(err)
	}
	st := defaultSettings()
	p := newPlain(us, &st)
	t.Cleanup(p.CloseIdleConnections)
	p.udp.maxAge = time.Nanosecond // every socket is too old for a second query
	seen := map[int]bool{}
	const n = 8
	for i := range n {
		if _, err := p.exchangeUDP(context.Background(), query("a"+strconv.Itoa(i)+".example.test.")); err != nil {
			t.Fatal(err)
		}
		seen[<-ports] = true
	}
	if len(seen) < n-1 {
		t.Errorf("%d distinct source ports in %d queries: old sockets were reused", len(seen), n)
	}
}

// TestUDPConcurrentQueriesDemultiplexed: many queries in flight at once
// share the pool's sockets, the server answers them in reverse order, and
// each gets its own answer.
func TestUDPConcurrentQueriesDemultiplexed(t *testing.T) {
	const n = 48
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		type pending struct {
			answer []byte
			to     net.Addr
		}
		var held []pending
		buf := make([]byte, 4096)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:k]) != nil {
				continue
			}
			b, _ := answerFor(q).Pack()
			held = append(held, pending{b, from})
			if len(held) < n {
				continue
			}
			for i := len(held) - 1; i >= 0; i-- {
				pc.WriteTo(held[i].answer, held[i].to)
			}
			held = held[:0]
		}
	}()
	server := pc.LocalAddr().String()
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{server})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := strings.Repeat("x", i+1) + ".example.test."
			resp, err := r.Exchange(context.Background(), query(name), strings.TrimSuffix(name, "."))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			if got, want := answerIP(resp), "192.0.2."+strconv.Itoa(len(name)); got != want {
				t.Errorf("%s: answer %s, want %s", name, got, want)
			}
		})
	}
	wg.Wait()
	if v := metric(t, m, "appfence_upstream_mismatched_responses_total", "upstream", server); v != 0 {
		t.Errorf("%v answers mismatched", v)
	}
}

// ephemeralRange returns the kernel's ephemeral port range (Linux's
// default when it cannot be read).
func ephemeralRange(t *testing.T) (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		l, err1 := strconv.Atoi(f[0])
		h, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			return l, h
		}
	}
	return lo, hi
}

// rawUDPServerFrom is rawUDPServer with the sender's address.
func rawUDPServerFrom(t testing.TB, reply func(query []byte, from net.Addr) [][]byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, out := range reply(buf[:n], from) {
				pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// TestOversizeUDPAnswerGoesTCP (issue 13 item 2): a UDP answer larger than
// the payload size the query advertised (it would have come as IP
// fragments) is not used; the query is asked again over TCP.
func TestOversizeUDPAnswerGoesTCP(t *testing.T) {
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if i > 10 {
				t.Fatal(err)
			}
			continue
		}
		t.Cleanup(func() { pc.Close(); l.Close() })
		go func() {
			buf := make([]byte, 4096)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				q := new(dns.Msg)
				if q.Unpack(buf[:n]) != nil {
					continue
				}
				resp := answerFor(q)
				resp.Answer[0].(*dns.A).A = net.IPv4(203, 0, 113, 66)
				for range 100 { // 1.6 KB: more than the 1232 advertised
					resp.Answer = append(resp.Answer, dns.Copy(resp.Answer[0]))
				}
				b, _ := resp.Pack()
				pc.WriteTo(b, from)
			}
		}()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					for {
						q, err := readFramed(c)
						if err != nil {
							return
						}
						writeFramed(c, answerFor(q))
					}
				}()
			}
		}()
		r := newRouter(t, nil, "failover", []string{pc.LocalAddr().String()})
		q := query("www.example.test.")
		q.IsEdns0().SetUDPSize(1232)
		resp, err := r.Exchange(context.Background(), q, "www.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Answer) != 1 || answerIP(resp) == "203.0.113.66" {
			t.Fatalf("answer of %d records from %s: the oversize UDP answer was used", len(resp.Answer), answerIP(resp))
		}
		return
	}
}

// TestUDPWaitersCancelledAndAnswered: queries that are cancelled, time
// out or are answered, many at once and with answers arriving after some
// waiters left, all return, and the sockets close once the router does.
func TestUDPWaitersCancelledAndAnswered(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || i%3 == 0 {
				continue // every third query unanswered
			}
			b, _ := answerFor(q).Pack()
			go func() {
				time.Sleep(time.Duration(i%5) * time.Millisecond) // some after their waiter left
				pc.WriteTo(b, from)
			}()
		}
	}()
	us, err := config.ParseUpstream(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	st := defaultSettings()
	p := newPlain(us, &st)
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			deadline := time.Now().Add(time.Duration(1+i%4) * time.Millisecond)
			if i%2 == 0 {
				time.AfterFunc(time.Duration(i%3)*time.Millisecond, cancel)
			}
			resp, err := p.exchangeUDPBy(ctx, query("c"+strconv.Itoa(i)+".example.test."), deadline)
			if err == nil && len(resp.Answer) != 1 {
				t.Errorf("query %d: answer %v", i, resp)
			}
		})
	}
	wg.Wait()
	p.CloseIdleConnections()
	waitFor(t, "the UDP sockets to close", func() bool { return udpReaders() == 0 })
}
