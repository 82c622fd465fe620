package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnsname"
)

// Explanation is a decision as `appfence explain` and /explain show it.
type Explanation struct {
	Client string `json:"client"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Group  string `json:"group"`
	Action string `json:"action"`
	App    string `json:"app,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Origin string `json:"origin,omitempty"`
	// Answer says what the client gets.
	Answer string `json:"answer"`
}

// Explain returns the decision for a query, without any network traffic.
// name may be in any case, with or without the trailing dot.
func (p *Policy) Explain(client netip.Addr, name string, qtype uint16) Explanation {
	canon := dnsname.Canonical(dns.Fqdn(name))
	d := p.Decide(client.Unmap(), canon)
	e := Explanation{
		Client: client.String(),
		Name:   canon,
		Type:   dns.Type(qtype).String(),
		Action: d.Action.String(),
	}
	if d.Group != nil {
		e.Group = d.Group.Name
	}
	if d.Match.App != nil {
		e.App = d.Match.App.Name
		e.Rule = d.Match.Rule
		e.Kind = d.Match.Kind.String()
		e.Origin = d.Match.Origin.String()
	}
	switch d.Action {
	case ActionRefuse:
		e.Answer = "REFUSED: the client is outside server.allow_clients"
	case ActionBlock:
		e.Answer = p.describeBlock(qtype)
	default:
		e.Answer = "forwarded upstream"
	}
	return e
}

func (p *Policy) describeBlock(qtype uint16) string {
	b := p.Config.Blocking
	var s string
	switch b.Response {
	case config.ResponseNXDomain:
		s = "NXDOMAIN"
	case config.ResponseNoData:
		s = "NOERROR, no records (NODATA)"
	case config.ResponseRefused:
		s = "REFUSED"
	case config.ResponseNull, config.ResponseSinkhole:
		v4, v6 := b.SinkholeIPv4, b.SinkholeIPv6
		if b.Response == config.ResponseNull {
			v4, v6 = netip.IPv4Unspecified(), netip.IPv6Unspecified()
		}
		switch {
		case qtype == dns.TypeA && v4.IsValid():
			s = "A " + v4.String()
		case qtype == dns.TypeAAAA && v6.IsValid():
			s = "AAAA " + v6.String()
		default:
			s = "NOERROR, no records (NODATA)"
		}
	}
	parts := []string{s, fmt.Sprintf("SOA TTL %s", b.TTL)}
	if b.ExtendedErrors {
		parts = append(parts, "EDE 15 (Blocked) for EDNS clients")
	}
	return strings.Join(parts, ", ")
}
