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
	// Via is where the rule was found: "canary" for a canary name, "ip"
	// for an address (what an upstream answer holding it gets); empty for
	// the query name.
	Via string `json:"via,omitempty"`
	// Answer says what the client gets.
	Answer string `json:"answer"`
}

// Explain returns the decision for a query, without any network traffic.
// name may be in any case, with or without the trailing dot. An IP address
// instead of a name explains what an upstream answer holding that address
// gets (answer inspection, blocking.inspect_cnames).
func (p *Policy) Explain(client netip.Addr, name string, qtype uint16) Explanation {
	return p.ExplainFor(client, nil, name, qtype)
}

// ExplainFor is Explain for a client with identity id (a ClientID or a
// certificate name, see GroupFor); a nil id is the address alone.
func (p *Policy) ExplainFor(client netip.Addr, id *Identity, name string, qtype uint16) Explanation {
	if a, err := netip.ParseAddr(name); err == nil {
		return p.explainAddr(client, a, qtype)
	}
	canon := dnsname.Canonical(dns.Fqdn(name))
	d := p.DecideFor(client.Unmap(), id, canon)
	e := Explanation{
		Client: client.String(),
		Name:   canon,
		Type:   dns.Type(qtype).String(),
		Action: d.Action.String(),
	}
	if d.Group != nil {
		e.Group = d.Group.Name
	}
	m := d.Match
	if m.App == nil && d.Action != ActionRefuse {
		// No rule of an app with an action for this group: show the rule
		// of an app the group leaves alone, if one matches.
		m, _ = p.Set.Matcher.Match(canon)
	}
	if m.App != nil {
		e.App = m.App.Name
		e.Rule = m.Rule
		e.Kind = m.Kind.String()
		e.Origin = m.Origin.String()
	}
	e.Via = d.Via.String()
	switch d.Action {
	case ActionRefuse:
		e.Answer = "REFUSED: the client is outside server.allow_clients"
	case ActionBlock:
		e.Answer = p.describeBlock(qtype, d.Via)
		if d.Unapproved {
			e.App = UnapprovedApp
			e.Answer = "not approved: group=" + e.Group + " (allowlist group; no approved app has this name): " + e.Answer
		}
	default:
		e.Answer = "forwarded upstream"
	}
	return e
}

// explainAddr explains what an upstream answer holding address a gets.
func (p *Policy) explainAddr(client netip.Addr, a netip.Addr, qtype uint16) Explanation {
	client = client.Unmap()
	e := Explanation{Client: client.String(), Name: a.Unmap().String(), Type: dns.Type(qtype).String(), Via: ViaIP.String()}
	d := p.Decide(client, "")
	if d.Group != nil {
		e.Group = d.Group.Name
	}
	if d.Action == ActionRefuse {
		e.Action = d.Action.String()
		e.Answer = "REFUSED: the client is outside server.allow_clients"
		return e
	}
	m, ok := p.MatchAddr(a)
	if ok {
		e.App, e.Rule, e.Kind, e.Origin = m.App.Name, m.Rule, m.Kind.String(), m.Origin.String()
		d.Action = d.Group.Action(m.App)
	}
	e.Action = d.Action.String()
	switch {
	case !p.Config.Blocking.InspectCNAMEs:
		e.Answer = "answers are not inspected (blocking.inspect_cnames = false)"
	case d.Action == ActionBlock:
		e.Answer = "an answer with this address is replaced by the block answer: " + p.describeBlock(qtype, ViaIP)
	default:
		e.Answer = "an answer with this address is passed on"
	}
	return e
}

func (p *Policy) describeBlock(qtype uint16, via Via) string {
	b := p.Config.Blocking
	var s string
	switch {
	case via == ViaCanary:
		s = "NXDOMAIN (a canary: always NXDOMAIN while an app is blocked)"
	case b.Response == config.ResponseNXDomain:
		s = "NXDOMAIN"
	case b.Response == config.ResponseNoData:
		s = "NOERROR, no records (NODATA)"
	case b.Response == config.ResponseRefused:
		s = "REFUSED"
	case b.Response == config.ResponseNull, b.Response == config.ResponseSinkhole:
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
