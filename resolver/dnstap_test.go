package resolver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	godnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/querylog/dnstap"
)

// tapped is one dnstap message as the tests compare it, decoded from
// whichever collector received it.
type tapped struct {
	Type     string // CLIENT_QUERY, ...
	Name     string // the question's name
	Protocol string // UDP, TCP, ...
	Client   string // query_address
	Port     uint32 // response_port: the resolver's
	Extra    dnstap.Decision
}

// dnstapQueries are the exchanges of TestDnstapCollectors: a query blocked
// over UDP, one exempted over TCP and a cache miss resolved upstream.
var dnstapQueries = []struct {
	netw, client, name string
	action             string
}{
	{"udp", "127.0.0.1", "www.tiktok.com.", "blocked"},
	{"tcp", "127.0.0.2", "www.tiktok.com.", "exempted"},
	{"udp", "127.0.0.1", "www.example.test.", "resolved"},
}

// TestDnstapCollectors answers queries with dnstap on and checks what real
// collectors received: fstrm_capture on a Unix socket and on TCP, its file
// decoded by golang-dnstap's reader and by BIND's dnstap-read, and the
// golang-dnstap command writing JSON.
func TestDnstapCollectors(t *testing.T) {
	tests := []struct {
		name  string
		start func(testing.TB, string, bool) *dnstest.Collector
		tcp   bool
		read  func(*testing.T, *dnstest.Collector) []tapped
		extra bool // the reader shows the extra field (the command's JSON does not)
	}{
		{"fstrm_capture unix", dnstest.StartFstrmCapture, false, readFstrm, true},
		{"fstrm_capture tcp", dnstest.StartFstrmCapture, true, readFstrm, true},
		{"golang-dnstap unix", dnstest.StartGolangDnstap, false, readGolangDnstap, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := tt.start(t, dir, tt.tcp)
			e := startEnv(t, "")
			w, err := dnstap.New(c.Target, dnstap.Options{Identity: "resolver-1", Version: "appfence test"})
			if err != nil {
				t.Fatal(err)
			}
			e.handler.SetDnstap(w)
			for _, q := range dnstapQueries {
				e.ask(t, q.netw, q.client, dnstest.NewQuery(q.name, dns.TypeA, true, false))
			}
			// Three client exchanges and the upstream ones of the two
			// misses (the exempted query and the resolved one).
			waitUntil(t, "5 exchanges written to the collector", func() bool { return w.Sent() == 5 })
			e.handler.SetDnstap(nil)
			w.Close()
			c.Stop()

			_, port, _ := net.SplitHostPort(e.addr)
			var want []tapped
			for _, q := range dnstapQueries {
				proto := strings.ToUpper(q.netw)
				group := "default"
				if q.client == "127.0.0.2" {
					group = "investigators"
				}
				var d dnstap.Decision
				if tt.extra {
					d = dnstap.Decision{Group: group, Action: q.action, Transport: q.netw}
					if strings.Contains(q.name, "tiktok") {
						d.App, d.Rule = "tiktok", "tiktok.com"
					}
				}
				for _, typ := range []string{"CLIENT_QUERY", "CLIENT_RESPONSE"} {
					want = append(want, tapped{Type: typ, Name: q.name, Protocol: proto, Client: q.client, Port: atoi(t, port), Extra: d})
				}
			}
			for _, name := range []string{"www.tiktok.com.", "www.example.test."} {
				want = append(want, tapped{Type: "FORWARDER_QUERY", Name: name}, tapped{Type: "FORWARDER_RESPONSE", Name: name})
			}
			got := tt.read(t, c)
			for _, w := range want {
				if !containsTapped(got, w) {
					t.Errorf("no message %+v among\n%+v", w, got)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d messages, want %d", len(got), len(want))
			}
		})
	}
}

func containsTapped(got []tapped, w tapped) bool {
	for _, g := range got {
		if g == w {
			return true
		}
	}
	return false
}

func atoi(t *testing.T, s string) uint32 {
	var n uint32
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// readFstrm decodes fstrm_capture's file with golang-dnstap's reader, and
// checks that BIND's dnstap-read decodes it to the same messages.
func readFstrm(t *testing.T, c *dnstest.Collector) []tapped {
	t.Helper()
	var out []tapped
	for _, m := range dnstest.ReadDnstapFile(t, c.File) {
		if string(m.Identity) != "resolver-1" || string(m.Version) != "appfence test" {
			t.Errorf("identity %q, version %q", m.Identity, m.Version)
		}
		dm := m.GetMessage()
		tp := tapped{Type: dm.GetType().String(), Port: dm.GetResponsePort()}
		if dm.SocketProtocol != nil {
			tp.Protocol = dm.GetSocketProtocol().String()
		}
		if a := dm.GetQueryAddress(); a != nil {
			tp.Client = net.IP(a).String()
		}
		wire := dm.GetQueryMessage()
		if strings.HasSuffix(tp.Type, "_RESPONSE") {
			wire = dm.GetResponseMessage()
			if dm.GetResponseTimeSec() == 0 {
				t.Errorf("%s without a response time", tp.Type)
			}
		}
		if dm.GetQueryTimeSec() == 0 {
			t.Errorf("%s without a query time", tp.Type)
		}
		var msg dns.Msg
		if err := msg.Unpack(wire); err != nil || len(msg.Question) != 1 {
			t.Errorf("%s: DNS message %v (%v)", tp.Type, msg.Question, err)
		} else {
			tp.Name = msg.Question[0].Name
		}
		if len(m.Extra) > 0 {
			if err := json.Unmarshal(m.Extra, &tp.Extra); err != nil {
				t.Errorf("%s: extra %q: %v", tp.Type, m.Extra, err)
			}
		}
		out = append(out, tp)
	}

	yaml := dnstest.DnstapRead(t, c.File)
	for _, want := range []string{"identity: resolver-1", "version: appfence test"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("dnstap-read -y has no %q", want)
		}
	}
	counts := map[string]int{}
	for _, tp := range out {
		counts[tp.Type]++
	}
	for typ, n := range counts {
		if got := strings.Count(yaml, "type: "+typ+"\n"); got != n {
			t.Errorf("dnstap-read -y shows %d %s, golang-dnstap %d", got, typ, n)
		}
	}
	for _, q := range dnstapQueries {
		if !strings.Contains(yaml, "'"+q.name+" IN A'") {
			t.Errorf("dnstap-read -y has no question %s", q.name)
		}
	}
	return out
}

// readGolangDnstap reads the JSON lines of the golang-dnstap command.
func readGolangDnstap(t *testing.T, c *dnstest.Collector) []tapped {
	t.Helper()
	f, err := os.ReadFile(c.File)
	if err != nil {
		t.Fatal(err)
	}
	var out []tapped
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		var line struct {
			Identity string `json:"identity"`
			Version  string `json:"version"`
			Message  struct {
				Type            string `json:"type"`
				QueryAddress    string `json:"query_address"`
				ResponsePort    uint32 `json:"response_port"`
				SocketProtocol  string `json:"socket_protocol"`
				QueryMessage    string `json:"query_message"`
				ResponseMessage string `json:"response_message"`
			} `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if line.Identity != "resolver-1" || line.Version != "appfence test" {
			t.Errorf("identity %q, version %q", line.Identity, line.Version)
		}
		m := line.Message
		tp := tapped{Type: m.Type, Protocol: strings.TrimPrefix(m.SocketProtocol, "<nil>"), Client: m.QueryAddress, Port: m.ResponsePort}
		text := m.QueryMessage + m.ResponseMessage // dig-like text
		if _, q, ok := strings.Cut(text, ";; QUESTION SECTION:\n;"); ok {
			tp.Name, _, _ = strings.Cut(q, "\t")
		}
		out = append(out, tp)
	}
	return out
}

// TestDnstapStalledCollector: with the collector stalled (a socket that
// accepts and never reads), paused (fstrm_capture stopped with SIGSTOP) or
// down (no socket), every query is answered promptly, the messages that do
// not fit the buffer are dropped and counted, and when a paused collector
// resumes, the writer reconnects and messages reach it again.
func TestDnstapStalledCollector(t *testing.T) {
	tests := []struct {
		name string
		// start returns the target and, for a collector that can resume,
		// the collector.
		start func(t *testing.T, dir string) (string, *dnstest.Collector)
	}{
		{"accepts and never reads", func(t *testing.T, dir string) (string, *dnstest.Collector) {
			return dnstest.NewStalledCollector(t, dir).Target, nil
		}},
		{"down", func(t *testing.T, dir string) (string, *dnstest.Collector) {
			return "unix:" + dir + "/nobody.sock", nil
		}},
		{"fstrm_capture paused, then resumed", func(t *testing.T, dir string) (string, *dnstest.Collector) {
			c := dnstest.StartFstrmCapture(t, dir, false)
			return c.Target, c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target, collector := tt.start(t, dir)
			e := startEnv(t, "")
			// The default timeout (2s): a Send that waited for the
			// collector would show in the answers' times.
			w, err := dnstap.New(target, dnstap.Options{Buffer: 16, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			e.handler.SetDnstap(w)
			if collector != nil {
				waitUntil(t, "connected to fstrm_capture", w.Connected)
				collector.Pause(t)
			}

			// Enough to fill the socket buffers of a paused collector
			// (a few hundred kilobytes) and the writer's.
			const queries = 1500
			var slowest time.Duration
			for i := range queries {
				netw := "udp"
				if i%3 == 0 {
					netw = "tcp"
				}
				start := time.Now()
				resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(fmt.Sprintf("n%d.www.tiktok.com.", i), dns.TypeA, true, false))
				slowest = max(slowest, time.Since(start))
				if resp.Rcode != dns.RcodeNameError {
					t.Fatalf("query %d: %s, want the block answer", i, dns.RcodeToString[resp.Rcode])
				}
			}
			t.Logf("%d queries, slowest answer %v, %d exchanges dropped, %d sent", queries, slowest, w.Dropped(), w.Sent())
			if slowest > time.Second {
				t.Errorf("slowest answer %v: the collector slowed the answers", slowest)
			}
			waitUntil(t, "messages dropped", func() bool { return w.Dropped() > 0 })
			if w.Dropped()+w.Sent() > queries {
				t.Errorf("%d dropped + %d sent of %d exchanges", w.Dropped(), w.Sent(), queries)
			}
			if collector == nil {
				return
			}
			// Once every exchange of the pause is written or dropped, one
			// query at a time until one is written: each counted exchange is
			// then known to be that query's.
			collector.Resume(t)
			total := uint64(queries)
			waitUntil(t, "the exchanges of the pause written or dropped", func() bool { return w.Sent()+w.Dropped() == total })
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; ; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("nothing written since the collector resumed (%d sent, %d dropped)", w.Sent(), w.Dropped())
				}
				sent := w.Sent()
				e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(fmt.Sprintf("after%d.www.tiktok.com.", i), dns.TypeA, true, false))
				total++
				waitUntil(t, "the exchange written or dropped", func() bool { return w.Sent()+w.Dropped() == total })
				if w.Sent() > sent {
					break
				}
			}
			e.handler.SetDnstap(nil)
			w.Close()
			collector.Stop()
			found := false
			for _, m := range dnstest.ReadDnstapFile(t, collector.File) {
				var msg dns.Msg
				if msg.Unpack(m.GetMessage().GetQueryMessage()) == nil && len(msg.Question) == 1 &&
					strings.HasPrefix(msg.Question[0].Name, "after") && m.GetMessage().GetType() == godnstap.Message_CLIENT_QUERY {
					found = true
				}
			}
			if !found {
				t.Error("no query sent after the collector resumed is in its file")
			}
		})
	}
}

// waitUntil polls cond until it holds, for up to 20 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
