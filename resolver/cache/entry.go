package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnswire"
)

// Key identifies a cached answer: the question, and the client's DNSSEC bits
// that change what the upstream answers.
type Key struct {
	// Name is the canonical question name: lower case, no trailing dot
	// (internal/dnsname), "" for the root.
	Name  string
	Type  uint16
	Class uint16
	// DO is the DNSSEC OK bit of the client's EDNS: DNSSEC records wanted.
	DO bool
	// CD is Checking Disabled: answers the upstream did not validate wanted.
	CD bool
}

// KeyOf returns the key of req, whose question name has the canonical form
// name.
func KeyOf(req *dns.Msg, name string) Key {
	q := req.Question[0]
	k := Key{Name: name, Type: q.Qtype, Class: q.Qclass, CD: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.DO = opt.Do()
	}
	return k
}

// fqdn is the question name in presentation format, fully qualified.
func (k Key) fqdn() string { return k.Name + "." }

// fqdnOf is k.fqdn(), without building it when m's question is it already
// (as when the upstream echoes the question AppFence asked).
func (k Key) fqdnOf(m *dns.Msg) string {
	if len(m.Question) > 0 {
		if q := m.Question[0].Name; len(q) == len(k.Name)+1 && q[len(k.Name)] == '.' && q[:len(k.Name)] == k.Name {
			return q
		}
	}
	return k.fqdn()
}

// Entry is one cached upstream answer. Its fields are set once, when it is
// stored, and only read afterwards, except the counters.
type Entry struct {
	// msg is the answer in wire format: compressed, without OPT, ID zero,
	// the question name in lower case, and the owner names of answer
	// records equal to the question compressed to it, so that writing the
	// client's letter case into the question changes theirs too. Every
	// other name, including names below the question, is kept as the
	// upstream wrote it and never points into the question.
	msg []byte
	// qnameEnd is the offset just past the question name.
	qnameEnd int
	// ttls has, in message order, where each record's TTL field is in msg
	// and the TTL stored for it (also what msg holds there).
	ttls []ttlField
	// stored is when the entry was made; expires is stored plus the
	// smallest stored TTL.
	stored, expires time.Time
	// patchCase is false when the question name could not be made the
	// compression target of the answer owners (a name starting with an
	// escaped byte); such entries are served through Msg.
	patchCase bool

	hits       atomic.Uint32 // hits in its lifetime, for prefetch
	refreshing atomic.Bool   // a prefetch of it was started
	failedAt   atomic.Int64  // when a refresh last failed (Unix ns), for serve_stale

	// findings are the apps the answer points at (its CNAME targets and
	// addresses), for one policy generation: computed once from the
	// unpacked answer, so that a hit only checks them against the client's
	// group.
	findings atomic.Pointer[findings]
}

// findings are what the resolver found in an answer (its policy's
// findings) under one policy generation. The cache keeps them without
// reading them: it knows nothing of policies.
type findings struct {
	generation uint64
	list       any
}

// Findings returns the findings kept with e for policy generation gen, and
// false when none were kept for it (the entry is new, or the policy was
// replaced since). It does not allocate.
func (e *Entry) Findings(gen uint64) (any, bool) {
	f := e.findings.Load()
	if f == nil || f.generation != gen {
		return nil, false
	}
	return f.list, true
}

// SetFindings keeps list, the findings of e's answer under policy
// generation gen, with e, replacing those of any other generation.
func (e *Entry) SetFindings(gen uint64, list any) {
	e.findings.Store(&findings{generation: gen, list: list})
}

// ttlField is the position and stored value of one record's TTL.
type ttlField struct {
	off uint16
	ttl uint32
}

// headerLen is the length of the fixed DNS header; the question name
// starts there.
const headerLen = 12

// newEntry makes the entry for m, the upstream's answer to the question of
// k, or returns false when m must not be cached (see storedTTLs).
func newEntry(k Key, m *dns.Msg, s *config.Cache, now time.Time) (*Entry, bool) {
	return newEntryWith(nil, k, m, s, now)
}

// newEntryWith is newEntry packing with pk's scratch space (nil: none).
func newEntryWith(pk *packer, k Key, m *dns.Msg, s *config.Cache, now time.Time) (*Entry, bool) {
	ttls, ok := storedTTLs(k, m, s)
	if !ok {
		return nil, false
	}
	e, err := pack(pk, k, m, ttls)
	if err != nil {
		return nil, false
	}
	least := ttls[0]
	for _, t := range ttls[1:] {
		least = min(least, t)
	}
	e.stored = now
	e.expires = now.Add(time.Duration(least) * time.Second)
	return e, true
}

// packer is the scratch space of pack, reused from one entry to the next
// (Cache.packers): the buffer the answer is packed in before it is copied
// to its exact size, and the compression map.
type packer struct {
	buf         []byte
	compression map[string]int
}

// pack builds the wire form of an entry from m with the stored TTLs.
//
// The question is packed uncompressed and kept out of the compression map,
// so no name can point into it, except the owner names of answer records
// equal to the question: they are packed under an alias of the question
// name that no real name can have (its first character written as a \DDD
// escape, which miekg/dns never produces for a printable character) and
// that alias alone maps to the question's offset.
//
// pk, when not nil, lends its scratch space.
func pack(pk *packer, k Key, m *dns.Msg, ttls []uint32) (*Entry, error) {
	u := *m
	u.Compress = false
	need := u.Len() // uncompressed: enough room for any packing
	var buf []byte
	var compression map[string]int
	if pk != nil {
		if cap(pk.buf) < need {
			pk.buf = make([]byte, need)
		}
		buf = pk.buf[:need]
		clear(buf[:headerLen]) // the rest is written before it is read
		if pk.compression == nil {
			pk.compression = map[string]int{}
		}
		compression = pk.compression
		defer clear(compression) // keeps no names of this answer
	} else {
		buf = make([]byte, need)
		compression = map[string]int{}
	}
	qname := k.fqdnOf(m)

	binary.BigEndian.PutUint16(buf[2:], flags(m))
	binary.BigEndian.PutUint16(buf[4:], 1)
	off, err := dns.PackDomainName(qname, buf, headerLen, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack question %s: %w", qname, err)
	}
	e := &Entry{qnameEnd: off, ttls: make([]ttlField, 0, len(ttls))}
	binary.BigEndian.PutUint16(buf[off:], k.Type)
	binary.BigEndian.PutUint16(buf[off+2:], k.Class)
	off += 4

	// Owners are compared with the question as the upstream's answer
	// spells it: unpacked by the same code, escapes and all.
	upstreamQname := m.Question[0].Name
	alias, aliased := questionAlias(qname)
	if aliased {
		compression[alias] = headerLen
	}
	e.patchCase = aliased || qname == "."
	for i, section := range [...][]dns.RR{m.Answer, m.Ns, m.Extra} {
		count := 0
		for _, rr := range section {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			owner := h.Name
			if i == 0 && aliased && strings.EqualFold(owner, upstreamQname) {
				h.Name = alias
			}
			start := off
			off, err = dns.PackRR(rr, buf, off, compression, true)
			h.Name = owner
			if err != nil {
				return nil, fmt.Errorf("pack %s: %w", rr, err)
			}
			ttlOff := nameEnd(buf, start) + 4 // after type and class
			ttl := ttls[len(e.ttls)]
			binary.BigEndian.PutUint32(buf[ttlOff:], ttl)
			e.ttls = append(e.ttls, ttlField{off: uint16(ttlOff), ttl: ttl})
			count++
		}
		binary.BigEndian.PutUint16(buf[6+2*i:], uint16(count))
	}
	e.msg = bytes.Clone(buf[:off])
	return e, nil
}

// questionAlias returns qname with its first character written as a \DDD
// escape: the same wire name under a string no unpacked name has. It
// returns false when qname starts with an escape already, or is the root.
func questionAlias(qname string) (string, bool) {
	c := qname[0]
	if c == '\\' || c == '.' {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(qname) + 3)
	b.WriteByte('\\')
	b.WriteByte('0' + c/100)
	b.WriteByte('0' + c/10%10)
	b.WriteByte('0' + c%10)
	b.WriteString(qname[1:])
	return b.String(), true
}

// nameEnd returns the offset just past the (possibly compressed) domain
// name at off in msg, which was packed by us.
func nameEnd(msg []byte, off int) int {
	for {
		c := int(msg[off])
		switch {
		case c == 0:
			return off + 1
		case c&0xC0 == 0xC0:
			return off + 2
		}
		off += 1 + c
	}
}

// flags returns the header bits of m as they are on the wire.
func flags(m *dns.Msg) uint16 {
	f := uint16(m.Opcode&0xF)<<11 | uint16(m.Rcode&0xF)
	for _, b := range [...]struct {
		set bool
		bit uint16
	}{
		{m.Response, dnswire.BitQR}, {m.Authoritative, dnswire.BitAA}, {m.Truncated, dnswire.BitTC},
		{m.RecursionDesired, dnswire.BitRD}, {m.RecursionAvailable, dnswire.BitRA}, {m.Zero, dnswire.BitZ},
		{m.AuthenticatedData, dnswire.BitAD}, {m.CheckingDisabled, dnswire.BitCD},
	} {
		if b.set {
			f |= b.bit
		}
	}
	return f
}

// Rcode returns the response code of the cached answer.
func (e *Entry) Rcode() int { return int(e.msg[3] & 0xF) }

// Expired reports whether e's TTL has run out at now: from then on it is
// served only as a stale answer.
func (e *Entry) Expired(now time.Time) bool { return !now.Before(e.expires) }

// ttlAt returns the TTL to serve for record i at now: its stored TTL less
// the whole seconds elapsed since e was stored, or StaleTTL once e has
// expired.
func (e *Entry) ttlAt(i int, now time.Time, elapsed uint32) uint32 {
	if e.Expired(now) {
		return StaleTTL
	}
	return e.ttls[i].ttl - min(elapsed, e.ttls[i].ttl)
}

// elapsed returns the whole seconds since e was stored.
func (e *Entry) elapsed(now time.Time) uint32 {
	d := now.Sub(e.stored)
	if d < 0 {
		return 0
	}
	return uint32(min(d/time.Second, maxTTL))
}

// Request is what a reply from the cache takes from the client's query.
type Request struct {
	ID uint16
	// QName is the question name as the client sent it, in wire format
	// (uncompressed): the reply's question has its letter case.
	QName      []byte
	RD, CD, AD bool
	// EDNS is set when the client sent an OPT record: the reply carries
	// one with Payload as its UDP size and the client's DO bit.
	EDNS    bool
	DO      bool
	Payload uint16
	// Limit is the largest reply the client takes (UDP); 0 for no limit.
	Limit int
}

// AppendReply appends to dst the reply to r from e as at now, and returns
// the extended slice. It returns false, and dst unchanged, when the reply
// would be larger than r.Limit or e cannot be patched for this client; the
// caller then builds the reply from Msg (which truncates).
//
// The reply is the stored answer with the client's ID; QR and RA set, AA
// and TC clear, the client's RD and CD; AD kept only for a client that sent
// DO or AD (RFC 6840, section 5.8); the question in the client's letter
// case (answer owners equal to it follow); TTLs counted down by the whole
// seconds elapsed, or StaleTTL after expiry; and for EDNS clients an OPT
// with the client's DO bit, carrying EDE 3 "Stale Answer" (RFC 8914) when
// stale.
func (e *Entry) AppendReply(dst []byte, r *Request, now time.Time) ([]byte, bool) {
	stale := e.Expired(now)
	size := len(e.msg)
	if r.EDNS {
		size += dnswire.OPTLen
		if stale {
			size += dnswire.EDELen
		}
	}
	if !e.patchCase || r.Limit > 0 && size > r.Limit {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, e.msg...)
	b := dst[start:]
	if headerLen+len(r.QName) != e.qnameEnd {
		return dst[:start], false
	}
	copy(b[headerLen:], r.QName)
	binary.BigEndian.PutUint16(b, r.ID)
	stored := binary.BigEndian.Uint16(b[2:])
	f := stored&^(dnswire.BitAA|dnswire.BitTC|dnswire.BitRD|dnswire.BitAD|dnswire.BitCD) | dnswire.BitQR | dnswire.BitRA
	if r.RD {
		f |= dnswire.BitRD
	}
	if r.CD {
		f |= dnswire.BitCD
	}
	if stored&dnswire.BitAD != 0 && (r.DO || r.AD) {
		f |= dnswire.BitAD
	}
	binary.BigEndian.PutUint16(b[2:], f)
	elapsed := e.elapsed(now)
	for i, t := range e.ttls {
		binary.BigEndian.PutUint32(b[t.off:], e.ttlAt(i, now, elapsed))
	}
	if r.EDNS {
		binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
		var ede *dnswire.EDE
		if stale {
			ede = &dnswire.EDE{Code: dns.ExtendedErrorCodeStaleAnswer}
		}
		dst = dnswire.AppendOPT(dst, r.Payload, r.DO, ede)
	}
	return dst, true
}

// Msg returns the cached answer unpacked, with TTLs as AppendReply would
// serve them at now, for the replies AppendReply cannot make. It is the
// stored message: ID zero, question and answer owners in lower case, no
// OPT; the caller finishes it for the client.
func (e *Entry) Msg(now time.Time) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(e.msg); err != nil {
		return nil, fmt.Errorf("unpack cached answer: %w", err)
	}
	elapsed := e.elapsed(now)
	i := 0
	for _, section := range [...][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			rr.Header().Ttl = e.ttlAt(i, now, elapsed)
			i++
		}
	}
	return m, nil
}

// String describes e for logs and test failures.
func (e *Entry) String() string {
	return "entry of " + strconv.Itoa(len(e.msg)) + " bytes, " + strconv.Itoa(len(e.ttls)) +
		" records, stored " + e.stored.Format(time.RFC3339) + ", expires " + e.expires.Format(time.RFC3339)
}
