package resolver

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/cache"
)

// The fast path answers, from the packet and without unpacking it into a
// dns.Msg, the two kinds of queries that are answered without waiting and
// make up most of the traffic: the blocked ones, and the fresh cache hits.
// It makes the same decision (policy.Decide), inspects a cached answer the
// same way (inspectEntry) and writes the same reply as the full pipeline
// (ServeDNS), byte for byte in meaning, and is observed the same way; the
// tests compare the two. Everything else is left to ServeDNS: queries that
// parseWire does not take, clients outside allow_clients, names under
// resolver.arpa, cache misses and stale answers (which wait for the
// upstream), and replies that would have to be truncated.
//
// The server calls it in the goroutine that read the packet: a query it
// answers costs no goroutine and, with the canonical name, one allocation.

// fastScratch is the memory the fast path reuses from one query to the
// next; each reading goroutine has its own.
type fastScratch struct {
	name []byte // the canonical name
	text []byte // the EDE text of a block answer
}

// serveWire answers the query in raw, a packet that checkPacket let through
// from client, received as src says (its transport, and on an encrypted
// one the device's identity), when it can: it appends the reply to out and
// returns it with true. It returns false, having counted and answered
// nothing, when the query must go through ServeDNS. A UDP reply is
// bounded by the client's payload size; the padding of encrypted
// transports is theirs to add.
func (h *Handler) serveWire(raw []byte, client netip.Addr, src source, out []byte, s *fastScratch) ([]byte, bool) {
	start := time.Now()
	var q wireQuery
	if !parseWire(raw, &q, s.name[:0]) {
		return out, false
	}
	s.name = q.name
	name := string(q.name)
	if dnsname.IsSubdomain(name, resolverArpa) {
		return out, false
	}
	st := h.state.Load()
	d := st.Policy.DecideFor(client, src.id, name)
	if d.Action == policy.ActionRefuse {
		return out, false
	}
	limit := 0
	if src.transport == "udp" {
		limit = q.udpLimit()
	}
	var reply []byte
	var ok bool
	if d.Action == policy.ActionBlock {
		reply, ok = appendBlock(out, st.Policy, &q, name, &d, limit, s)
	} else {
		reply, ok = h.appendHit(out, st, raw, &q, name, client, &d, limit, s)
	}
	if !ok {
		return out, false
	}
	h.observe(st, &d, client, src, question{raw: raw}, int(reply[len(out)+3]&0xF), start)
	if dt := h.dnstap.Load(); dt != nil {
		tapWire(dt, &d, src, raw, reply[len(out):], start)
	}
	return reply, true
}

// appendHit appends the reply to q from a fresh cache entry, or the block
// answer when the entry's findings block it for d's group, and counts the
// hit. It returns false, having counted nothing, without a fresh entry or
// when the reply would be larger than limit.
func (h *Handler) appendHit(dst []byte, st *State, raw []byte, q *wireQuery, name string, client netip.Addr, d *policy.Decision, limit int, s *fastScratch) ([]byte, bool) {
	c := h.cache
	if !c.Enabled() {
		return dst, false
	}
	key := cache.Key{Name: name, Type: q.qtype, Class: q.qclass, DO: q.do, CD: q.cd}
	now := c.Now()
	e, fresh := c.Lookup(key, now)
	if !fresh {
		return dst, false
	}
	var reply []byte
	var ok bool
	if inspectEntry(st, e, nil, now, d) {
		reply, ok = appendBlock(dst, st.Policy, q, name, d, limit, s)
	} else {
		r := cache.Request{
			ID: q.id, QName: q.qname(), RD: q.rd, CD: q.cd, AD: q.ad,
			EDNS: q.edns, DO: q.do, Payload: ednsSize, Limit: limit,
		}
		reply, ok = e.AppendReply(dst, &r, now)
	}
	if !ok {
		return dst, false
	}
	if c.Hit(e, now) {
		// The upstream query is made from a dns.Msg, as for a miss.
		req := new(dns.Msg)
		if req.Unpack(raw) == nil {
			c.Refresh(key, h.fetch(st, req, name, client))
		}
	}
	return reply, true
}

// appendBlock appends the block answer to q decided d, as blockAnswer and
// finish build it, and returns false when it would be larger than limit
// (0: no limit).
func appendBlock(dst []byte, p *policy.Policy, q *wireQuery, name string, d *policy.Decision, limit int, s *fastScratch) ([]byte, bool) {
	ttl := blockTTL(p)
	rcode, addr := blockRcode(p, q.qtype, d)
	var an, ar uint16
	if addr.IsValid() {
		an = 1
	}
	if q.edns {
		ar = 1
	}
	start := len(dst)
	dst = appendHeader(dst, q, rcode, an, 1, ar)
	dst = append(dst, q.question...)
	if addr.IsValid() {
		var at int
		dst = appendPointer(dst, headerLen)
		dst, at = appendRRFields(dst, q.qtype, q.qclass, ttl)
		if addr.Is4() {
			a := addr.As4()
			dst = append(dst, a[:]...)
		} else {
			a := addr.As16()
			dst = append(dst, a[:]...)
		}
		setRDLength(dst, at)
	}

	var at int
	dst = appendOwner(dst, q, name, blockZone(name, d))
	dst, at = appendRRFields(dst, dns.TypeSOA, dns.ClassINET, ttl)
	mname := len(dst) - start
	dst = appendName(dst, soaMName[:len(soaMName)-1])
	dst = append(dst, byte(len("hostmaster")))
	dst = append(dst, "hostmaster"...)
	dst = binary.BigEndian.AppendUint16(dst, 0xC000|uint16(mname))
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.Loaded.Unix()))
	dst = binary.BigEndian.AppendUint32(dst, soaRefresh)
	dst = binary.BigEndian.AppendUint32(dst, soaRetry)
	dst = binary.BigEndian.AppendUint32(dst, soaExpire)
	dst = binary.BigEndian.AppendUint32(dst, ttl)
	setRDLength(dst, at)

	if q.edns {
		var ede *dnswire.EDE
		if p.Config.Blocking.ExtendedErrors {
			s.text = appendBlockText(s.text[:0], d)
			ede = &dnswire.EDE{Code: dns.ExtendedErrorCodeBlocked, Text: s.text}
		}
		dst = dnswire.AppendOPT(dst, ednsSize, q.do, ede)
	}
	if limit > 0 && len(dst)-start > limit {
		return dst[:start], false
	}
	return dst, true
}

// appendOwner appends the owner of a record of a reply to q whose name is
// zone, a suffix of q's canonical name: a compression pointer to where the
// question has it, when the question spells it in the same letter case
// (miekg/dns compresses only names equal byte for byte, and so does the
// fast path), or else the name in full.
func appendOwner(dst []byte, q *wireQuery, name, zone string) []byte {
	qname := q.qname()
	off, k := 0, 0 // the label at off starts at name[k:]
	for len(name)-k > len(zone) {
		k += int(qname[off]) + 1
		off += 1 + int(qname[off])
	}
	if wireEqual(qname[off:], zone) {
		return appendPointer(dst, headerLen+off)
	}
	return appendName(dst, zone)
}

// wireEqual reports whether the wire-format name w is name, byte for byte.
func wireEqual(w []byte, name string) bool {
	k := 0
	for off := 0; w[off] != 0; off += 1 + int(w[off]) {
		n := int(w[off])
		if k > 0 {
			if k >= len(name) || name[k] != '.' {
				return false
			}
			k++
		}
		if k+n > len(name) || string(w[off+1:off+1+n]) != name[k:k+n] {
			return false
		}
		k += n
	}
	return k == len(name)
}
