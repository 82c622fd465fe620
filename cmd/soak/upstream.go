package main

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

// upstreamTTL is the TTL of the upstream's answers: short, so that cached
// answers expire during the soak and the upstream keeps being asked.
const upstreamTTL = 5

// upstream is the resolver AppFence forwards to: a miekg/dns server on a
// loopback port, UDP and TCP, that can be stopped and started again on the
// same port. It answers every name: A and AAAA with addresses derived from
// the name (so that an answer can be checked), NXDOMAIN for names starting
// with "nx", NODATA for other types.
type upstream struct {
	addr    string
	mu      sync.Mutex
	servers []*dns.Server
	asked   atomic.Int64
}

// newUpstream starts an upstream on a free loopback port.
func newUpstream() (*upstream, error) {
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
		u := &upstream{addr: pc.LocalAddr().String()}
		u.serve(pc, l)
		return u, nil
	}
	return nil, fmt.Errorf("upstream: no free port")
}

func (u *upstream) serve(pc net.PacketConn, l net.Listener) {
	h := dns.HandlerFunc(u.answer)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		u.servers = append(u.servers, s)
	}
}

// stop stops answering: the port is closed, queries get nothing back.
func (u *upstream) stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.servers {
		s.Shutdown()
	}
	u.servers = nil
}

// start serves again on the same port.
func (u *upstream) start() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", u.addr); err == nil {
			var l net.Listener
			if l, err = net.Listen("tcp", u.addr); err == nil {
				u.serve(pc, l)
				return nil
			}
			pc.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("upstream: restart on %s: %w", u.addr, err)
}

func (u *upstream) answer(w dns.ResponseWriter, req *dns.Msg) {
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
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: upstreamTTL}
	switch {
	case strings.HasPrefix(strings.ToLower(q.Name), "nx"):
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{soa()}
	case q.Qtype == dns.TypeA:
		resp.Answer = []dns.RR{&dns.A{Hdr: hdr, A: addrOf(q.Name, false).AsSlice()}}
	case q.Qtype == dns.TypeAAAA:
		resp.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: addrOf(q.Name, true).AsSlice()}}
	default:
		resp.Ns = []dns.RR{soa()}
	}
	w.WriteMsg(resp)
}

func soa() dns.RR {
	rr, _ := dns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 " + fmt.Sprint(upstreamTTL))
	return rr
}

// addrOf is the address the upstream gives name: in 198.18.0.0/15 or
// 2001:db8::/32, from a hash of the name in lower case. They are answer
// data only; nothing is sent to them.
func addrOf(name string, v6 bool) netip.Addr {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(name)))
	n := h.Sum32()
	if v6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16)&1, byte(n >> 8), byte(n)})
}
