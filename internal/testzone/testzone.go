// Package testzone is a small authoritative server for one signed zone on
// a loopback port, the upstream behind AppFence in the conformance run
// (cmd/conformance). It answers as a careful authoritative server does:
// AA set, SOA in the authority section of negative answers, RRSIGs only
// to queries with DO, EDNS answered with EDNS, unknown opcodes NOTIMP,
// and answers that do not fit the client's UDP size truncated.
package testzone

import (
	"crypto"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Server serves one zone on a loopback address, UDP and TCP on the same
// port.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Zone is the zone's origin, fully qualified ("gr.test.").
	Zone    string
	rrsets  map[key][]dns.RR
	sigs    map[key][]dns.RR
	names   map[string]bool
	servers []*dns.Server
}

type key struct {
	name  string
	rtype uint16
}

// Start signs a zone named zone with fresh keys and serves it on a free
// port of 127.0.0.1. The zone has the records genreport asks about at its
// apex (SOA, NS, A, AAAA, MX, TXT, DNSKEY and their RRSIGs) and a name
// server ns1 at 127.0.0.1.
func Start(zone string) (*Server, error) {
	zone = dns.Fqdn(strings.ToLower(zone))
	s := &Server{
		Zone:   zone,
		rrsets: make(map[key][]dns.RR),
		sigs:   make(map[key][]dns.RR),
		names:  make(map[string]bool),
	}
	if err := s.build(); err != nil {
		return nil, fmt.Errorf("testzone %s: %w", zone, err)
	}
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testzone %s: %w", zone, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		s.Addr = pc.LocalAddr().String()
		h := dns.HandlerFunc(s.serveDNS)
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go srv.ActivateAndServe()
			<-started
			s.servers = append(s.servers, srv)
		}
		return s, nil
	}
	return nil, fmt.Errorf("testzone %s: no free port", zone)
}

// Close stops the server.
func (s *Server) Close() {
	for _, srv := range s.servers {
		srv.Shutdown()
	}
}

func (s *Server) build() error {
	z := s.Zone
	records := []string{
		z + " 3600 IN SOA ns1." + z + " hostmaster." + z + " 2026120301 7200 3600 1209600 300",
		z + " 3600 IN NS ns1." + z,
		z + " 3600 IN A 127.0.0.1",
		z + " 3600 IN AAAA ::1",
		z + " 3600 IN MX 10 mail." + z,
		z + " 3600 IN TXT \"AppFence conformance zone\"",
		"ns1." + z + " 3600 IN A 127.0.0.1",
		"mail." + z + " 3600 IN A 127.0.0.1",
		"www." + z + " 3600 IN CNAME " + z,
	}
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			return fmt.Errorf("record %q: %w", text, err)
		}
		s.add(rr)
	}
	// Two keys, as a zone in a rollover has: the DNSKEY answer with its
	// signatures is then larger than 512 bytes, which genreport's
	// edns@512 test needs.
	var signers []struct {
		key  *dns.DNSKEY
		priv crypto.Signer
	}
	for _, flags := range []uint16{257, 256} {
		k := &dns.DNSKEY{
			Hdr:       dns.RR_Header{Name: z, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
			Flags:     flags,
			Protocol:  3,
			Algorithm: dns.RSASHA256,
		}
		priv, err := k.Generate(2048)
		if err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		s.add(k)
		signers = append(signers, struct {
			key  *dns.DNSKEY
			priv crypto.Signer
		}{k, priv.(crypto.Signer)})
	}
	now := time.Now()
	for k, rrset := range s.rrsets {
		for _, signer := range signers {
			if signer.key.Flags == 257 && k.rtype != dns.TypeDNSKEY {
				continue // the KSK signs only the key set
			}
			sig := &dns.RRSIG{
				Hdr:        dns.RR_Header{Name: k.name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 3600},
				Inception:  uint32(now.Add(-time.Hour).Unix()),
				Expiration: uint32(now.Add(30 * 24 * time.Hour).Unix()),
				KeyTag:     signer.key.KeyTag(),
				SignerName: z,
				Algorithm:  signer.key.Algorithm,
			}
			if err := sig.Sign(signer.priv, rrset); err != nil {
				return fmt.Errorf("sign %s %s: %w", k.name, dns.TypeToString[k.rtype], err)
			}
			s.sigs[k] = append(s.sigs[k], sig)
		}
	}
	return nil
}

func (s *Server) add(rr dns.RR) {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	k := key{h.Name, h.Rrtype}
	s.rrsets[k] = append(s.rrsets[k], rr)
	s.names[h.Name] = true
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := s.answer(req)
	if resp == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// answer builds the reply to req, or nil for messages that get none.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = false
	resp.AuthenticatedData = false
	resp.Zero = false
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()
	if opt != nil {
		ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ro.SetUDPSize(1232)
		ro.SetDo(do)
		resp.Extra = append(resp.Extra, ro)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			return resp
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		resp.Rcode = dns.RcodeNotImplemented
		resp.Question = nil
		return resp
	}
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(s.Zone, name) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true
	if q.Qclass != dns.ClassINET {
		resp.Rcode = dns.RcodeRefused
		resp.Authoritative = false
		return resp
	}
	s.lookup(resp, name, q.Qtype, do)
	return resp
}

func (s *Server) lookup(resp *dns.Msg, name string, qtype uint16, do bool) {
	appendSet := func(sec *[]dns.RR, k key) {
		*sec = append(*sec, s.rrsets[k]...)
		if do {
			*sec = append(*sec, s.sigs[k]...)
		}
	}
	if !s.names[name] {
		resp.Rcode = dns.RcodeNameError
		appendSet(&resp.Ns, key{s.Zone, dns.TypeSOA})
		return
	}
	if cname := (key{name, dns.TypeCNAME}); len(s.rrsets[cname]) > 0 && qtype != dns.TypeCNAME {
		appendSet(&resp.Answer, cname)
		target := strings.ToLower(s.rrsets[cname][0].(*dns.CNAME).Target)
		if k := (key{target, qtype}); len(s.rrsets[k]) > 0 {
			appendSet(&resp.Answer, k)
		}
		return
	}
	if qtype == dns.TypeANY {
		for k := range s.rrsets {
			if k.name == name {
				appendSet(&resp.Answer, k)
			}
		}
		return
	}
	k := key{name, qtype}
	if len(s.rrsets[k]) == 0 {
		appendSet(&resp.Ns, key{s.Zone, dns.TypeSOA})
		return
	}
	appendSet(&resp.Answer, k)
	if qtype == dns.TypeNS || qtype == dns.TypeMX {
		for _, rr := range s.rrsets[k] {
			var target string
			switch rr := rr.(type) {
			case *dns.NS:
				target = rr.Ns
			case *dns.MX:
				target = rr.Mx
			}
			appendSet(&resp.Extra, key{strings.ToLower(target), dns.TypeA})
		}
	}
}
