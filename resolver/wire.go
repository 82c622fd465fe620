package resolver

import (
	"encoding/binary"
	"strings"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnswire"
)

// The fast path (fast.go) reads a query straight from the packet: the
// header, the question and the OPT record, without unpacking a dns.Msg. It
// takes only plain queries, the kind stub resolvers send; everything else
// (fast.go says what) goes through the Handler's full pipeline, which
// answers it as before.

// wireQuery is a plain query read from a packet.
type wireQuery struct {
	id         uint16
	rd, cd, ad bool
	// question is the question as sent: the name in the client's letter
	// case, then type and class. It points into the packet.
	question []byte
	qtype    uint16
	qclass   uint16
	edns     bool // the query has an OPT record
	do       bool // its DNSSEC OK bit
	udpSize  uint16
	// name is the canonical question name (lower case, labels separated
	// by dots, no trailing dot), appended to the caller's buffer.
	name []byte
}

// qname returns the question name as sent, in wire format.
func (q *wireQuery) qname() []byte { return q.question[:len(q.question)-4] }

// parseWire reads raw, a packet that checkPacket let through, into q, with
// the canonical name appended to name[:0]. It returns false for a query
// the fast path leaves to the full pipeline:
//
//   - an opcode other than QUERY, TC or Z set, an rcode, or other counts
//     than one question and at most one additional record (check answers
//     those);
//   - an additional record that is not an OPT of EDNS version 0 owned by
//     the root, an option other than NSID, COOKIE and PADDING (see
//     optionsParse), or bytes after the last record;
//   - a class other than IN, or a type that is answered here (ANY, AXFR,
//     IXFR) or is a meta-type (check);
//   - the root name, or a label with a byte other than a letter, a digit,
//     '-' or '_' (whose presentation form needs escapes).
func parseWire(raw []byte, q *wireQuery, name []byte) bool {
	if len(raw) < headerLen {
		return false
	}
	flags := binary.BigEndian.Uint16(raw[2:])
	if flags&(dnswire.BitQR|dnswire.BitAA|dnswire.BitTC|0x7800|dnswire.BitZ|0x000F) != 0 ||
		binary.BigEndian.Uint16(raw[4:]) != 1 || binary.BigEndian.Uint16(raw[6:]) != 0 ||
		binary.BigEndian.Uint16(raw[8:]) != 0 || binary.BigEndian.Uint16(raw[10:]) > 1 {
		return false
	}
	q.id = binary.BigEndian.Uint16(raw)
	q.rd, q.cd, q.ad = flags&dnswire.BitRD != 0, flags&dnswire.BitCD != 0, flags&dnswire.BitAD != 0
	name = name[:0]
	off := headerLen
	for {
		if off >= len(raw) {
			return false
		}
		n := int(raw[off])
		if n == 0 {
			break
		}
		if n > 63 || off+1+n >= len(raw) {
			return false
		}
		if len(name) > 0 {
			name = append(name, '.')
		}
		for _, c := range raw[off+1 : off+1+n] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return false
			}
			name = append(name, c)
		}
		off += 1 + n
	}
	off++ // the root label
	if len(name) == 0 || off-headerLen > 255 || off+4 > len(raw) {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(raw[off:])
	q.qclass = binary.BigEndian.Uint16(raw[off+2:])
	q.question = raw[headerLen : off+4]
	q.name = name
	off += 4
	switch t := q.qtype; {
	case q.qclass != dns.ClassINET, t == dns.TypeANY, t == dns.TypeAXFR, t == dns.TypeIXFR, badQuestionType(t):
		return false
	}
	q.edns, q.do, q.udpSize = false, false, 0
	if binary.BigEndian.Uint16(raw[10:]) == 0 {
		return off == len(raw)
	}
	// An OPT record: root owner, type, UDP size, extended rcode, version,
	// flags, options (hop by hop: not looked at).
	if off+11 > len(raw) || raw[off] != 0 || binary.BigEndian.Uint16(raw[off+1:]) != dns.TypeOPT ||
		raw[off+6] != 0 || off+11+int(binary.BigEndian.Uint16(raw[off+9:])) != len(raw) {
		return false
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(raw[off+3:])
	q.do = raw[off+7]&0x80 != 0
	return raw[off+5] == 0 && // extended rcode bits in a query: left to check
		optionsParse(raw[off+11:])
}

// optionsParse reports whether the options of an OPT record are well
// formed (code, length, data) and all of the kinds the fast path takes:
// NSID, COOKIE (dig sends one) and PADDING, which miekg/dns unpacks
// whatever their data. Other options, some of which miekg/dns checks (a
// client subnet, a keepalive, ...), send the query through the full
// pipeline, which drops it when it does not parse; options are hop by
// hop, and AppFence answers none of them.
func optionsParse(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		switch binary.BigEndian.Uint16(b) {
		case dns.EDNS0NSID, dns.EDNS0COOKIE, dns.EDNS0PADDING:
		default:
			return false
		}
		n := 4 + int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b) || !validOption(binary.BigEndian.Uint16(b), b[4:n]) {
			return false // a cookie of a bad length: FORMERR, from check
		}
		b = b[n:]
	}
	return true
}

// udpLimit returns the largest UDP reply to q (see replyLimit).
func (q *wireQuery) udpLimit() int { return replyLimit(q.edns, q.udpSize) }

// appendHeader appends the header of a reply to q: the client's ID, RD and
// CD, QR and RA set, the given rcode and section counts.
func appendHeader(dst []byte, q *wireQuery, rcode int, an, ns, ar uint16) []byte {
	f := uint16(dnswire.BitQR|dnswire.BitRA) | uint16(rcode&0xF)
	if q.rd {
		f |= dnswire.BitRD
	}
	if q.cd {
		f |= dnswire.BitCD
	}
	dst = binary.BigEndian.AppendUint16(dst, q.id)
	dst = binary.BigEndian.AppendUint16(dst, f)
	dst = binary.BigEndian.AppendUint16(dst, 1)
	dst = binary.BigEndian.AppendUint16(dst, an)
	dst = binary.BigEndian.AppendUint16(dst, ns)
	return binary.BigEndian.AppendUint16(dst, ar)
}

// appendPointer appends a compression pointer to off.
func appendPointer(dst []byte, off int) []byte {
	return binary.BigEndian.AppendUint16(dst, 0xC000|uint16(off))
}

// appendName appends name, a canonical name without escapes (see
// parseWire), uncompressed.
func appendName(dst []byte, name string) []byte {
	for len(name) > 0 {
		label, rest, _ := strings.Cut(name, ".")
		dst = append(dst, byte(len(label)))
		dst = append(dst, label...)
		name = rest
	}
	return append(dst, 0)
}

// appendRRFields appends the fields of a record after its owner: type,
// class, TTL and a zero RDLENGTH, and returns the extended slice and where
// RDLENGTH is, for setRDLength.
func appendRRFields(dst []byte, rrtype, class uint16, ttl uint32) ([]byte, int) {
	dst = binary.BigEndian.AppendUint16(dst, rrtype)
	dst = binary.BigEndian.AppendUint16(dst, class)
	dst = binary.BigEndian.AppendUint32(dst, ttl)
	at := len(dst)
	return append(dst, 0, 0), at
}

// setRDLength sets the RDLENGTH at at to what follows it in dst.
func setRDLength(dst []byte, at int) {
	binary.BigEndian.PutUint16(dst[at:], uint16(len(dst)-at-2))
}
