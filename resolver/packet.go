package resolver

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"

	"github.com/miekg/dns"
)

// Why a packet is dropped before it reaches the Handler. None of these is
// answered: an answer to a packet that is not a well-formed query can be
// aimed at a victim by spoofing the source address (reflection), and a
// client that sends such packets is not a stub resolver waiting for one.
var (
	errShort      = errors.New("shorter than a DNS header")
	errResponse   = errors.New("a response (QR set)")
	errCompressed = errors.New("question name with a compression pointer")
	errCutShort   = errors.New("question cut short")
	errLabelType  = errors.New("question name with a reserved label type")
	errTooLarge   = errors.New("larger than 4096 bytes")
	errRateLimit  = errors.New("over server.rate_limit")
	errBusy       = errors.New("too many UDP queries in flight")
)

// headerLen is the length of the DNS header.
const headerLen = 12

// checkPacket reports why a packet read from the wire must be dropped
// without parsing it, or nil.
//
// A question name with a compression pointer is dropped: a query's only
// question has nothing before it to point to (RFC 1035, 4.1.4: pointers
// refer to a prior occurrence of a name), so no resolver sends one, and it
// would let a reply (which writes the name out) be larger than the query.
// So are a name with a label type other than a length or a pointer
// (the extended label types of RFC 2671, withdrawn by RFC 6891), which
// does not parse, and a name that runs off the end of the packet. So is a
// question cut short after its name or its type, which miekg/dns
// parses (with type or class 0) but which a reply writes out whole. With
// both dropped, the REFUSED answer to a client outside allow_clients,
// which is the question and at most an OPT without options, is never
// larger than the query: AppFence cannot be used to amplify a flood.
func checkPacket(raw []byte) error {
	if len(raw) < headerLen {
		return errShort
	}
	if raw[2]&0x80 != 0 {
		return errResponse
	}
	if binary.BigEndian.Uint16(raw[4:]) == 0 {
		return nil
	}
	for off := headerLen; off < len(raw); {
		c := raw[off]
		switch {
		case c == 0:
			if len(raw) < off+1+4 { // type and class
				return errCutShort
			}
			return nil
		case c&0xC0 == 0xC0:
			return errCompressed
		case c&0xC0 != 0:
			return errLabelType // 0x40 and 0x80 (RFC 6891, 5)
		}
		off += 1 + int(c)
	}
	return errCutShort // the name runs off the end
}

// request parses a packet read from the wire that checkPacket let through
// (every transport checks a packet once, as soon as it is read, before the
// fast path or the rate limit). It returns nil for a packet that is
// dropped, and counts the drop in the client's group.
//
// A query whose only fault is a badly formed option in its OPT record (see
// validOption) is not dropped: it is returned with its options replaced by
// one malformedOption, and answered FORMERR (check). A client that sent
// it speaks DNS, and the answer, the question and an OPT without options,
// is no larger than the query.
func (s *Server) request(raw []byte, client netip.Addr) *dns.Msg {
	req := new(dns.Msg)
	err := req.Unpack(raw)
	at, ok := optOptions(raw)
	if ok && (err != nil || !validOptions(raw[at:])) {
		if req = withoutOptions(raw, at); req != nil {
			return req
		}
	}
	if err != nil {
		s.drop(client, err)
		return nil
	}
	return req
}

// optOptions returns where the options of the OPT record of raw start,
// when raw is a query with one question (checkPacket let it through: the
// name has no pointers) and one additional record, an OPT owned by the
// root, that ends the packet.
func optOptions(raw []byte) (int, bool) {
	if len(raw) < headerLen || binary.BigEndian.Uint16(raw[4:]) != 1 || binary.BigEndian.Uint16(raw[6:]) != 0 ||
		binary.BigEndian.Uint16(raw[8:]) != 0 || binary.BigEndian.Uint16(raw[10:]) != 1 {
		return 0, false
	}
	off := headerLen
	for off < len(raw) && raw[off] != 0 && raw[off] < 64 {
		off += 1 + int(raw[off])
	}
	off += 1 + 4 // the root label, type and class
	// The OPT: root owner, type, UDP size, TTL (extended rcode, version,
	// flags), RDLENGTH.
	if off+11 > len(raw) || raw[off] != 0 || binary.BigEndian.Uint16(raw[off+1:]) != dns.TypeOPT ||
		off+11+int(binary.BigEndian.Uint16(raw[off+9:])) != len(raw) {
		return 0, false
	}
	return off + 11, true
}

// withoutOptions parses raw, whose OPT options start at at, without them,
// and gives it one malformedOption instead; nil when it still does not
// parse.
func withoutOptions(raw []byte, at int) *dns.Msg {
	b := append([]byte(nil), raw[:at]...)
	binary.BigEndian.PutUint16(b[at-2:], 0)
	req := new(dns.Msg)
	if req.Unpack(b) != nil {
		return nil
	}
	opt := req.IsEdns0()
	if opt == nil {
		return nil
	}
	opt.Option = []dns.EDNS0{malformedOption{&dns.EDNS0_LOCAL{Code: 0}}}
	return req
}

// malformedOption stands for the options of a query of which one is badly
// formed; check answers such a query FORMERR.
type malformedOption struct{ *dns.EDNS0_LOCAL }

// validOptions reports whether b, the options of an OPT record, are well
// framed (code, length, data) and each is valid (validOption).
func validOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		n := 4 + int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b) || !validOption(binary.BigEndian.Uint16(b), b[4:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// validOption reports whether data is a valid value of option code in a
// query. The options AppFence knows must be well formed, and the query is
// answered FORMERR otherwise, as their RFCs say:
//
//   - CLIENT-SUBNET (RFC 7871): family 1 or 2 (or 0 with a
//     source prefix of 0, which dig sends), a prefix no longer than the
//     family's addresses, exactly the bytes the prefix needs with no bit
//     set beyond it, and a scope of 0;
//   - TCP-KEEPALIVE (RFC 7828): empty, or a 2-byte timeout;
//   - COOKIE (RFC 7873, 5.2.2): a client cookie of 8 bytes, or one with a
//     server cookie of 8 to 32 bytes;
//   - EXPIRE (RFC 7314): empty in a query, or 4 bytes.
//
// Other options are hop by hop and not looked at.
func validOption(code uint16, data []byte) bool {
	switch code {
	case dns.EDNS0SUBNET:
		if len(data) < 4 || data[3] != 0 {
			return false
		}
		family, prefix := binary.BigEndian.Uint16(data), int(data[2])
		bits := 0
		switch family {
		case 0:
			return prefix == 0 && len(data) == 4
		case 1:
			bits = 32
		case 2:
			bits = 128
		default:
			return false
		}
		addr := data[4:]
		if prefix > bits || len(addr) != (prefix+7)/8 {
			return false
		}
		return prefix%8 == 0 || addr[len(addr)-1]&(0xFF>>(prefix%8)) == 0
	case dns.EDNS0TCPKEEPALIVE:
		return len(data) == 0 || len(data) == 2
	case dns.EDNS0COOKIE:
		return len(data) == 8 || len(data) >= 16 && len(data) <= 40
	case dns.EDNS0EXPIRE:
		return len(data) == 0 || len(data) == 4
	}
	return true
}

// drop counts a request dropped without an answer.
func (s *Server) drop(client netip.Addr, why error) {
	s.handler.Dropped(client)
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("request dropped", "client", client.String(), "why", why.Error())
	}
}

// noTSIG has the dns.ResponseWriter methods for what AppFence's writers do
// not do: TSIG and hijacking.
type noTSIG struct{}

func (noTSIG) TsigStatus() error   { return nil }
func (noTSIG) TsigTimersOnly(bool) {}
func (noTSIG) Hijack()             {}

// writeMsg packs m and writes it to w.
func writeMsg(w io.Writer, m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
