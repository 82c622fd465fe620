// Package synthetic is an upstream resolver for the soak and the bench
// commands: a miekg/dns server on a loopback port that answers every name,
// with addresses derived from the name, and that can stop and start again.
package synthetic

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Upstream is the resolver AppFence forwards to: a miekg/dns server on a
// loopback port, UDP and TCP, that can be stopped and started again on the
// same port. It answers every name: A and AAAA with addresses derived from
// the name (AddrOf, so that an answer can be checked), NXDOMAIN for names
// starting with "nx", NODATA for other types, all with the TTL it was
// started with.
type Upstream struct {
	// Addr is the address it serves on, "127.0.0.1:port".
	Addr    string
	ttl     uint32
	mu      sync.Mutex
	servers []*dns.Server
	asked   atomic.Int64
}

// Start starts an upstream on a free loopback port whose answers have the
// given TTL.
func Start(ttl uint32) (*Upstream, error) {
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		u := &Upstream{Addr: pc.LocalAddr().String(), ttl: ttl}
		u.serve(pc, l)
		return u, nil
	}
	return nil, fmt.Errorf("upstream: no free port")
}

func (u *Upstream) serve(pc net.PacketConn, l net.Listener) {
	h := dns.HandlerFunc(u.answer)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		u.servers = append(u.servers, s)
	}
}

// Stop stops answering: the port is closed, queries get nothing back.
func (u *Upstream) Stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.servers {
		s.Shutdown()
	}
	u.servers = nil
}

// Restart serves again on the same port after Stop.
func (u *Upstream) Restart() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", u.Addr); err == nil {
			var l net.Listener
			if l, err = net.Listen("tcp", u.Addr); err == nil {
				u.serve(pc, l)
				return nil
			}
			pc.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("upstream: restart on %s: %w", u.Addr, err)
}

func (u *Upstream) answer(w dns.ResponseWriter, req *dns.Msg) {
	u.asked.Add(1)
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(dns.DefaultMsgSize, opt.Do())
	}
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: u.ttl}
	switch {
	case strings.HasPrefix(strings.ToLower(q.Name), "nx"):
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{u.soa()}
	case q.Qtype == dns.TypeA:
		resp.Answer = []dns.RR{&dns.A{Hdr: hdr, A: AddrOf(q.Name, false).AsSlice()}}
	case q.Qtype == dns.TypeAAAA:
		resp.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: AddrOf(q.Name, true).AsSlice()}}
	default:
		resp.Ns = []dns.RR{u.soa()}
	}
	w.WriteMsg(resp)
}

func (u *Upstream) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns.test.",
		Mbox:    "hostmaster.test.",
		Serial:  1,
		Refresh: 7200,
		Retry:   3600,
		Expire:  1209600,
		Minttl:  u.ttl,
	}
}

// Asked returns the number of queries answered.
func (u *Upstream) Asked() int64 { return u.asked.Load() }

// AddrOf is the address the upstream gives name: in 198.18.0.0/15 or
// 2001:db8::/32, from a hash of the name in lower case. They are answer
// data only; nothing is sent to them.
func AddrOf(name string, v6 bool) netip.Addr {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(name)))
	n := h.Sum32()
	if v6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16)&1, byte(n >> 8), byte(n)})
}

// FreeAddr returns a loopback address with a port free for UDP and TCP, for
// a server started afterwards (the soak's and the bench's).
func FreeAddr() (string, error) {
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			l.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no free port")
}
