package dnstap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "unix:/run/appfence/dnstap.sock", want: Target{"unix", "/run/appfence/dnstap.sock"}},
		{in: "tcp:127.0.0.1:6000", want: Target{"tcp", "127.0.0.1:6000"}},
		{in: "tcp:[::1]:6000", want: Target{"tcp", "[::1]:6000"}},
		{in: "tcp:collector.example:6000", want: Target{"tcp", "collector.example:6000"}},
		{in: "/run/dnstap.sock", wantErr: "write unix:"},
		{in: "unix:", wantErr: "write unix:"},
		{in: "unix:run/dnstap.sock", wantErr: "absolute"},
		{in: "tcp:127.0.0.1", wantErr: "tcp:host:port"},
		{in: "tcp::6000", wantErr: "tcp:host:port"},
		{in: "udp:127.0.0.1:6000", wantErr: "unix: or tcp:"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTarget(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func testMessage(t testing.TB, name string) *Message {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	r := new(dns.Msg)
	r.SetRcode(q, dns.RcodeNameError)
	start := time.Now()
	return &Message{
		Kind:         Client,
		Transport:    "udp",
		Client:       netip.MustParseAddrPort("127.0.0.2:40000"),
		Server:       netip.MustParseAddrPort("127.0.0.1:53"),
		QueryTime:    start,
		ResponseTime: start.Add(time.Millisecond),
		QueryMsg:     q,
		ResponseMsg:  r,
		Decision:     Decision{Group: "kids", App: "tiktok", Action: "blocked", Rule: "tiktok.com"},
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFstrmCaptureUnixAndTCP sends messages to fstrm_capture on a Unix
// socket and on TCP, and decodes its file with golang-dnstap's reader and,
// when installed, BIND's dnstap-read.
func TestFstrmCaptureUnixAndTCP(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "unix"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			c := dnstest.StartFstrmCapture(t, t.TempDir(), tcp)
			w, err := New(c.Target, Options{Identity: "test-resolver", Version: "appfence test"})
			if err != nil {
				t.Fatal(err)
			}
			names := []string{"www.tiktok.com.", "example.org.", "v16.tiktokcdn.com."}
			for _, n := range names {
				w.Send(testMessage(t, n))
			}
			waitFor(t, "3 messages sent", 10*time.Second, func() bool { return w.Sent() == 3 })
			w.Close()
			c.Stop()

			msgs := dnstest.ReadDnstapFile(t, c.File)
			if len(msgs) != 6 {
				t.Fatalf("%d dnstap messages in the file, want 6 (3 queries, 3 responses)", len(msgs))
			}
			for i, m := range msgs {
				if string(m.Identity) != "test-resolver" || string(m.Version) != "appfence test" {
					t.Errorf("message %d: identity %q version %q", i, m.Identity, m.Version)
				}
				want := dnstap.Message_CLIENT_QUERY
				if i%2 == 1 {
					want = dnstap.Message_CLIENT_RESPONSE
				}
				dm := m.GetMessage()
				if dm.GetType() != want || dm.GetSocketProtocol() != dnstap.SocketProtocol_UDP ||
					dm.GetSocketFamily() != dnstap.SocketFamily_INET ||
					!bytes.Equal(dm.GetQueryAddress(), []byte{127, 0, 0, 2}) || dm.GetQueryPort() != 40000 ||
					!bytes.Equal(dm.GetResponseAddress(), []byte{127, 0, 0, 1}) || dm.GetResponsePort() != 53 {
					t.Errorf("message %d: %v", i, dm)
				}
				var d Decision
				if err := json.Unmarshal(m.Extra, &d); err != nil || d.Group != "kids" || d.App != "tiktok" || d.Action != "blocked" || d.Transport != "udp" {
					t.Errorf("message %d: extra %q (%v)", i, m.Extra, err)
				}
				wire := dm.GetQueryMessage()
				if want == dnstap.Message_CLIENT_RESPONSE {
					wire = dm.GetResponseMessage()
					if dm.GetResponseTimeSec() == 0 || dm.GetQueryTimeSec() == 0 {
						t.Errorf("message %d: no query or response time", i)
					}
				}
				var dmsg dns.Msg
				if err := dmsg.Unpack(wire); err != nil || dmsg.Question[0].Name != names[i/2] {
					t.Errorf("message %d: DNS message %v (%v), want %s", i, dmsg.Question, err, names[i/2])
				}
			}
			out := dnstest.DnstapRead(t, c.File)
			for _, want := range []string{"www.tiktok.com", "example.org", "CLIENT_QUERY", "CLIENT_RESPONSE", "identity: test-resolver", "NXDOMAIN"} {
				if !strings.Contains(out, want) {
					t.Errorf("dnstap-read -y has no %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestStalledCollector: Send never blocks while the collector accepts and
// never reads; what does not fit the buffer is dropped and counted, in the
// counter given as well.
func TestStalledCollector(t *testing.T) {
	c := dnstest.NewStalledCollector(t, t.TempDir())
	var dropped counter
	w, err := New(c.Target, Options{Buffer: 4, Timeout: 100 * time.Millisecond, Dropped: &dropped})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		w.Send(testMessage(t, "www.tiktok.com."))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("1000 Sends took %v", took)
	}
	if w.Dropped() < 1000-4 || w.Sent() != 0 || w.Connected() {
		t.Errorf("dropped %d, sent %d, connected %v; want at least 996 dropped, none sent", w.Dropped(), w.Sent(), w.Connected())
	}
	waitFor(t, "a connection accepted", 5*time.Second, func() bool { return c.Accepted() > 0 })
	w.Close()
	if got := dropped.Load(); got != w.Dropped() || got != 1000 {
		t.Errorf("counter %d, Dropped %d, want 1000 (the buffered ones dropped at Close)", got, w.Dropped())
	}
}

// TestReconnect: the writer reconnects, with backoff, to a collector that
// was down at first and to one that restarts.
func TestReconnect(t *testing.T) {
	dir := t.TempDir()
	sock := "unix:" + filepath.Join(dir, "dnstap.sock")
	w, err := New(sock, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round := range 2 {
		c := dnstest.StartFstrmCapture(t, dir, false)
		if c.Target != sock {
			t.Fatalf("collector on %s, want %s", c.Target, sock)
		}
		waitFor(t, "connected", 10*time.Second, w.Connected)
		sent := w.Sent()
		name := fmt.Sprintf("round%d.example.", round)
		w.Send(testMessage(t, name))
		waitFor(t, "the message sent", 5*time.Second, func() bool { return w.Sent() > sent })
		c.Stop()
		found := false
		for _, m := range dnstest.ReadDnstapFile(t, c.File) {
			var msg dns.Msg
			if msg.Unpack(m.GetMessage().GetQueryMessage()) == nil && len(msg.Question) == 1 && msg.Question[0].Name == name {
				found = true
			}
		}
		if !found {
			t.Errorf("round %d: %s not in the collector's file", round, name)
		}
		// The writer notices the collector is gone at its next write.
		deadline := time.Now().Add(10 * time.Second)
		for w.Connected() && time.Now().Before(deadline) {
			w.Send(testMessage(t, "gone.example."))
			time.Sleep(10 * time.Millisecond)
		}
		if w.Connected() {
			t.Fatal("still connected to a collector that has stopped")
		}
	}
}

// TestCheck: Check succeeds against a collector and fails without one.
func TestCheck(t *testing.T) {
	c := dnstest.StartFstrmCapture(t, t.TempDir(), true)
	if err := Check(c.Target, 2*time.Second); err != nil {
		t.Errorf("Check(%s) = %v", c.Target, err)
	}
	c.Stop()
	if err := Check(c.Target, 2*time.Second); err == nil || !strings.Contains(err.Error(), "no collector at") {
		t.Errorf("Check of a stopped collector = %v", err)
	}
}

type counter struct{ atomic.Uint64 }

func (c *counter) Add(v float64) { c.Uint64.Add(uint64(v)) }
