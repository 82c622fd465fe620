package dnstap

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
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

// FstrmCapture is Debian's fstrm_capture receiving dnstap frames into a
// file, on a Unix socket or TCP.
type FstrmCapture struct {
	Target string // for New
	File   string
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

// StartFstrmCapture starts fstrm_capture in dir, on a Unix socket (tcp
// false) or on TCP port (tcp true); it skips the test when the binary is
// missing. It waits until the collector accepts connections.
func StartFstrmCapture(t testing.TB, dir string, tcp bool, port int) *FstrmCapture {
	t.Helper()
	bin, err := exec.LookPath("fstrm_capture")
	if err != nil {
		t.Skip("fstrm_capture not installed (Debian package fstrm-bin; scripts/test-deps.sh installs it)")
	}
	c := &FstrmCapture{File: filepath.Join(dir, "capture.fstrm")}
	args := []string{"-t", "protobuf:dnstap.Dnstap", "-w", c.File}
	var network, addr string
	if tcp {
		network, addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	} else {
		network, addr = "unix", filepath.Join(dir, "dnstap.sock")
		os.Remove(addr)
		args = append(args, "-u", addr)
	}
	c.Target = network + ":" + addr
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start fstrm_capture: %v", err)
	}
	t.Cleanup(func() { c.Stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A bare connection is enough to know it listens: a dial without
		// a handshake is dropped by fstrm_capture and writes nothing.
		if conn, err := net.DialTimeout(network, addr, time.Second); err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("fstrm_capture does not listen on %s: %s", c.Target, c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends fstrm_capture (SIGINT: it closes the file cleanly); it may be
// called more than once.
func (c *FstrmCapture) Stop(t testing.TB) {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGCONT)
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Pause stops fstrm_capture with SIGSTOP: it holds its connections and
// reads nothing, a stalled collector. Resume undoes it.
func (c *FstrmCapture) Pause(t testing.TB) {
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused fstrm_capture.
func (c *FstrmCapture) Resume(t testing.TB) {
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// readFile decodes a Frame Streams file of dnstap messages with
// golang-dnstap's reader.
func readFile(t testing.TB, path string) []*dnstap.Dnstap {
	t.Helper()
	in, err := dnstap.NewFrameStreamInputFromFilename(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	ch := make(chan []byte, 1024)
	go func() { in.ReadInto(ch); close(ch) }()
	var out []*dnstap.Dnstap
	for frame := range ch {
		m := new(dnstap.Dnstap)
		if err := proto.Unmarshal(frame, m); err != nil {
			t.Fatalf("frame: %v", err)
		}
		out = append(out, m)
	}
	return out
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
			dir := t.TempDir()
			port := 0
			if tcp {
				port = freePort(t)
			}
			c := StartFstrmCapture(t, dir, tcp, port)
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
			c.Stop(t)

			msgs := readFile(t, c.File)
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
			out := dnstapRead(t, c.File)
			for _, want := range []string{"www.tiktok.com", "example.org", "CLIENT_QUERY", "CLIENT_RESPONSE", "identity: test-resolver", "NXDOMAIN"} {
				if !strings.Contains(out, want) {
					t.Errorf("dnstap-read -y has no %q:\n%s", want, out)
				}
			}
		})
	}
}

// dnstapRead decodes a dnstap file with BIND's dnstap-read -y.
func dnstapRead(t testing.TB, path string) string {
	t.Helper()
	bin, err := exec.LookPath("dnstap-read")
	if err != nil {
		t.Log("dnstap-read not installed (bind9-dnsutils): the file is checked with golang-dnstap only")
		return ""
	}
	out, err := exec.Command(bin, "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read -y %s: %v\n%s", path, err, out)
	}
	return string(out)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
