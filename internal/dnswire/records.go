package dnswire

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// AppendPadding pads msg, a whole DNS message, to a multiple of block
// bytes with an EDNS padding option (RFC 7830), as RFC 8467's Block-Length
// Padding asks of responses on encrypted transports. It pads only a
// message whose last record is its OPT and that carries no padding
// option yet; any other message, one that does not parse, and one that
// would grow past 65535 bytes are returned as they are. It may append in
// place: msg must not be shared.
func AppendPadding(msg []byte, block int) []byte {
	at, ok := lastOPT(msg)
	if !ok || block <= 0 {
		return msg
	}
	n := (block - (len(msg)+4)%block) % block
	if len(msg)+4+n > dns.MaxMsgSize {
		return msg
	}
	rdlen := binary.BigEndian.Uint16(msg[at+8:])
	binary.BigEndian.PutUint16(msg[at+8:], rdlen+uint16(4+n))
	msg = binary.BigEndian.AppendUint16(msg, dns.EDNS0PADDING)
	msg = binary.BigEndian.AppendUint16(msg, uint16(n))
	for range n {
		msg = append(msg, 0)
	}
	return msg
}

// lastOPT returns the offset of the TYPE field of msg's OPT record when it
// is the last record of msg, owned by the root and without a padding
// option.
func lastOPT(msg []byte) (int, bool) {
	last := 0
	ok := eachRecord(msg, func(owner, at int) {
		last = 0
		if at == owner+1 && binary.BigEndian.Uint16(msg[at:]) == dns.TypeOPT {
			last = at
		}
	})
	if !ok || last == 0 {
		return 0, false
	}
	for o := last + 10; o+4 <= len(msg); o += 4 + int(binary.BigEndian.Uint16(msg[o+2:])) {
		if binary.BigEndian.Uint16(msg[o:]) == dns.EDNS0PADDING {
			return 0, false
		}
	}
	return last, true
}

// MinTTL returns the lowest TTL of the records of msg, a whole message,
// but its OPT record's (which is no TTL): how long the reply may be kept,
// as DoH's Cache-Control says (RFC 8484, 5.1). It is false for a message
// without such records or that does not parse.
func MinTTL(msg []byte) (uint32, bool) {
	var ttl uint32
	found := false
	ok := eachRecord(msg, func(owner, at int) {
		if binary.BigEndian.Uint16(msg[at:]) == dns.TypeOPT {
			return
		}
		if t := binary.BigEndian.Uint32(msg[at+4:]); !found || t < ttl {
			ttl, found = t, true
		}
	})
	return ttl, ok && found
}

// eachRecord calls fn with the offsets of the owner name and the TYPE
// field of each record of msg (answer, authority and additional), in
// order, and reports whether msg parsed to its end. fn may read the
// record's 10 bytes of fixed fields.
func eachRecord(msg []byte, fn func(owner, at int)) bool {
	if len(msg) < 12 {
		return false
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := 12
	for range qd {
		if off = skipName(msg, off); off < 0 || off+4 > len(msg) {
			return false
		}
		off += 4
	}
	for range rrs {
		owner := off
		if off = skipName(msg, off); off < 0 || off+10 > len(msg) {
			return false
		}
		fn(owner, off)
		off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
		if off > len(msg) {
			return false
		}
	}
	return off == len(msg)
}

// skipName returns the offset just past the name at off in msg, or -1
// when it runs off the end or is not a name.
func skipName(msg []byte, off int) int {
	for off < len(msg) {
		c := int(msg[off])
		switch {
		case c == 0:
			return off + 1
		case c&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case c&0xC0 != 0:
			return -1
		}
		off += 1 + c
	}
	return -1
}
