package resolver

import (
	"context"
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
// So is a question cut short after its name or its type, which miekg/dns
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
		}
		off += 1 + int(c) // 0x40 and 0x80 are not labels: Unpack fails
	}
	return nil // cut short: Unpack fails
}

// request checks and parses a packet read from the wire: the start of the
// packet path that UDP and TCP share. It returns nil for a packet that is
// dropped, and counts the drop in the client's group.
func (s *Server) request(raw []byte, client netip.Addr) *dns.Msg {
	if err := checkPacket(raw); err != nil {
		s.drop(client, err)
		return nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		s.drop(client, err)
		return nil
	}
	return req
}

// drop counts a request dropped without an answer.
func (s *Server) drop(client netip.Addr, why error) {
	s.handler.Dropped(client)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
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
