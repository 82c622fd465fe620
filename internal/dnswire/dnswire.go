// Package dnswire writes the parts of DNS messages that AppFence's fast
// paths build byte by byte instead of packing a dns.Msg: header bits and
// the OPT record (RFC 6891) with an extended DNS error (RFC 8914) and the
// padding of encrypted transports (RFC 7830, RFC 8467); reads what a
// reply may be cached for (MinTTL, for DoH); and
// names DNS values as labels and flags do (RcodeName, ParseType).
//
// It imports only miekg/dns and the standard library: every package may
// import it.
package dnswire

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Header bits in the second 16-bit word of a DNS message.
const (
	BitQR = 1 << 15
	BitAA = 1 << 10
	BitTC = 1 << 9
	BitRD = 1 << 8
	BitRA = 1 << 7
	BitZ  = 1 << 6
	BitAD = 1 << 5
	BitCD = 1 << 4
)

// OPTLen is the length of an OPT record without options; EDELen is that of
// an extended DNS error option without extra text.
const (
	OPTLen = 11
	EDELen = 6
)

// EDE is an extended DNS error: its info code and extra text.
type EDE struct {
	Code uint16
	Text []byte
}

// AppendOPT appends an OPT record owned by the root, version 0, with the
// UDP payload size and DO bit given, carrying ede when it is not nil.
func AppendOPT(dst []byte, payload uint16, do bool, ede *EDE) []byte {
	var ttl uint32 // extended rcode 0, version 0
	if do {
		ttl |= 1 << 15
	}
	rdlen := 0
	if ede != nil {
		rdlen = EDELen + len(ede.Text)
	}
	dst = append(dst, 0) // owner: the root
	dst = binary.BigEndian.AppendUint16(dst, dns.TypeOPT)
	dst = binary.BigEndian.AppendUint16(dst, payload)
	dst = binary.BigEndian.AppendUint32(dst, ttl)
	dst = binary.BigEndian.AppendUint16(dst, uint16(rdlen))
	if ede != nil {
		dst = binary.BigEndian.AppendUint16(dst, dns.EDNS0EDE)
		dst = binary.BigEndian.AppendUint16(dst, uint16(2+len(ede.Text)))
		dst = binary.BigEndian.AppendUint16(dst, ede.Code)
		dst = append(dst, ede.Text...)
	}
	return dst
}

// ParseType parses a query type mnemonic ("A", "https") or "TYPE65"; ""
// is A.
func ParseType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeA, nil
	}
	if t, ok := dns.StringToType[strings.ToUpper(s)]; ok {
		return t, nil
	}
	var n uint16
	if _, err := fmt.Sscanf(strings.ToUpper(s), "TYPE%d", &n); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("type: %q is not a DNS type", s)
}

// RcodeName is the name of an rcode in metric labels and logs: its
// mnemonic, or RCODE and the number. 16 is BADVERS: miekg/dns names it
// BADSIG, the TSIG meaning, but a resolver only ever sends it for an
// unknown EDNS version.
func RcodeName(rcode int) string {
	if rcode == dns.RcodeBadVers {
		return "BADVERS"
	}
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rcode)
}
