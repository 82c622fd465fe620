package resolver

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// rawUpstream is a loopback UDP upstream that answers every A query with
// one A record (192.0.2.1, TTL 300) and an OPT record, built in place in a
// reused buffer: it allocates nothing, so that the allocations a benchmark
// counts are the resolver's alone.
type rawUpstream struct {
	conn *net.UDPConn
	Addr string
}

func startRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{conn: conn, Addr: conn.LocalAddr().String()}
	done := make(chan struct{})
	go u.serve(done)
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return u
}

func (u *rawUpstream) serve(done chan struct{}) {
	defer close(done)
	in := make([]byte, 4096)
	out := make([]byte, 0, 4096)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			return
		}
		if n < 12 {
			continue
		}
		// End of the question: the name, then type and class.
		off := 12
		for off < n && in[off] != 0 {
			off += int(in[off]) + 1
		}
		off += 5
		if off > n {
			continue
		}
		out = append(out[:0], in[:off]...)
		out[2] |= 0x80 // QR
		out[3] = 0x80  // RA, NOERROR
		binary.BigEndian.PutUint16(out[4:], 1)
		binary.BigEndian.PutUint16(out[6:], 1)
		binary.BigEndian.PutUint16(out[8:], 0)
		binary.BigEndian.PutUint16(out[10:], 1)
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 192, 0, 2, 1)
		out = append(out, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0) // OPT, 1232 bytes
		u.conn.WriteToUDPAddrPort(out, from)
	}
}

// missClient sends queries for new names to a running server over UDP and
// reads the replies: a cache miss each, through the whole server.
type missClient struct {
	conn  *net.UDPConn
	reqs  [][]byte
	reply []byte
	next  int
}

func newMissClient(t testing.TB, e *env, n int) *missClient {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &missClient{conn: conn, reply: make([]byte, 4096)}
	for i := range n {
		raw, err := dnstest.NewQuery(fmt.Sprintf("m%d.example.test.", i), dns.TypeA, true, false).Pack()
		if err != nil {
			t.Fatal(err)
		}
		c.reqs = append(c.reqs, raw)
	}
	return c
}

// ask sends the next query and waits for its answer.
func (c *missClient) ask(t testing.TB) {
	req := c.reqs[c.next%len(c.reqs)]
	c.next++
	if _, err := c.conn.Write(req); err != nil {
		t.Fatal(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.conn.Read(c.reply)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 12 && c.reply[0] == req[0] && c.reply[1] == req[1] {
			if rcode := c.reply[3] & 0xf; rcode != dns.RcodeSuccess || binary.BigEndian.Uint16(c.reply[6:]) != 1 {
				t.Fatalf("reply rcode %d, %d answers", rcode, binary.BigEndian.Uint16(c.reply[6:]))
			}
			return
		}
	}
}

// startMiss starts a server whose upstream is a rawUpstream, with a cache
// large enough for n names.
func startMiss(t testing.TB, n int) (*env, *missClient) {
	t.Helper()
	up := startRawUpstream(t)
	cfg := fmt.Sprintf(testConfig, up.Addr, "") + fmt.Sprintf("\n[cache]\nsize = %d\n", max(n, 1024))
	e := startEnvWith(t, nil, cfg)
	return e, newMissClient(t, e, n)
}

// BenchmarkMiss measures a cache miss through the whole server: a UDP
// query read from the socket, decided, forwarded to a loopback upstream,
// its answer stored in the cache, and the reply sent to the client.
//
//	go test -run '^$' -bench Miss -benchmem ./resolver/
func BenchmarkMiss(b *testing.B) {
	_, c := startMiss(b, b.N+1)
	c.ask(b) // the upstream's first socket outside the timing
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.ask(b)
	}
}
