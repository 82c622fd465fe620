package policy

import (
	"net/netip"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/iptable"
)

// Via says where the rule of a decision was found.
type Via uint8

// Where a rule is found: the query name, a canary name, or a record of the
// upstream's answer (blocking.inspect_cnames).
const (
	ViaName   Via = iota // the query name
	ViaCanary            // a DNS canary name (see canary.go)
	ViaCNAME             // the target of a CNAME record in the answer
	ViaDNAME             // the target of a DNAME record in the answer
	ViaSVCB              // the TargetName of an HTTPS or SVCB record in the answer
	ViaIP                // an A or AAAA address, or an HTTPS/SVCB address hint, in an app's ip_ranges
)

// String returns the name used in explanations and the query log; "" for
// ViaName.
func (v Via) String() string {
	switch v {
	case ViaCanary:
		return "canary"
	case ViaCNAME:
		return "cname"
	case ViaDNAME:
		return "dname"
	case ViaSVCB:
		return "svcb"
	case ViaIP:
		return "ip"
	}
	return ""
}

// Answer reports whether the rule was found in the upstream's answer.
func (v Via) Answer() bool { return v >= ViaCNAME }

// Finding is an app that an upstream answer points at: a name in it (a
// CNAME, DNAME or HTTPS/SVCB target) that an app's rule matches, or an
// address in it inside an app's ip_ranges. It holds values only (an app
// ID, not the app), so an answer's findings can be kept with a cached
// answer without keeping an old policy alive; they are valid for the
// policy that made them.
type Finding struct {
	// App is the app's blocklists.App.ID.
	App int
	Via Via
	// Found is the canonical name, or the address as text.
	Found string
	// Addr is the address looked up in ip_ranges, for ViaIP: Found, or the
	// IPv4 address embedded in Found, a NAT64 or 6to4 address.
	Addr netip.Addr
}

// ipRule is an ip_ranges entry of an app.
type ipRule struct {
	app  *blocklists.App
	text string // the prefix as text: the rule shown in logs
}

// ipRules builds the table of every app's ip_ranges. A prefix that two
// apps list belongs to the first, as names do.
func ipRules(set *blocklists.Set) *iptable.Table[ipRule] {
	rules := map[netip.Prefix]ipRule{}
	for _, a := range set.Apps {
		for _, pr := range a.IPRanges {
			if _, dup := rules[pr]; !dup {
				rules[pr] = ipRule{app: a, text: pr.String()}
			}
		}
	}
	return iptable.New(rules)
}

// Inspects reports whether answers are inspected: blocking.inspect_cnames
// is on and some app has an action (blocked, exempted or monitored) for
// some group. When it is false, Findings always returns nil.
func (p *Policy) Inspects() bool { return p.inspects }

// Findings returns the apps that the answer section of m points at, each
// app once, at the first record that points at it: CNAME and DNAME
// targets, the TargetName of HTTPS and SVCB records (alias and service
// mode) matched like query names, and A and AAAA addresses and HTTPS/SVCB
// address hints looked up in the apps' ip_ranges. Only apps that have an
// action for some group count, so a clean answer has no findings (nil).
//
// Findings depend on the policy only, not on the client: they are meant to
// be computed once per answer (and kept with a cached one), and applied to
// each query's decision with Inspect.
func (p *Policy) Findings(m *dns.Msg) []Finding {
	if !p.inspects || m == nil {
		return nil
	}
	var out []Finding
	add := func(app *blocklists.App, via Via, found string, addr netip.Addr) {
		if app == nil || !p.counted[app.ID] {
			return
		}
		for i := range out {
			if out[i].App == app.ID {
				return
			}
		}
		out = append(out, Finding{App: app.ID, Via: via, Found: found, Addr: addr})
	}
	name := func(target string, via Via) {
		if target == "." || target == "" {
			return // SVCB: the owner itself (service mode) or no service (alias mode)
		}
		c := dnsname.Canonical(target)
		if r, ok := p.Set.Matcher.MatchIn(c, p.counted); ok && r.Kind != blocklists.KindAllow {
			add(r.App, via, c, netip.Addr{})
		}
	}
	address := func(ip []byte) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		a = a.Unmap()
		if r, at, ok := p.lookupAddr(a); ok {
			add(r.app, ViaIP, a.String(), at)
		}
	}
	svcb := func(s *dns.SVCB) {
		name(s.Target, ViaSVCB)
		for _, kv := range s.Value {
			switch h := kv.(type) {
			case *dns.SVCBIPv4Hint:
				for _, ip := range h.Hint {
					address(ip)
				}
			case *dns.SVCBIPv6Hint:
				for _, ip := range h.Hint {
					address(ip)
				}
			}
		}
	}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			name(rr.Target, ViaCNAME)
		case *dns.DNAME:
			name(rr.Target, ViaDNAME)
		case *dns.HTTPS:
			svcb(&rr.SVCB)
		case *dns.SVCB:
			svcb(rr)
		case *dns.A:
			address(rr.A)
		case *dns.AAAA:
			address(rr.AAAA)
		}
	}
	return out
}

// lookupAddr looks an answer address up in the apps' ip_ranges, and an
// IPv6 address that embeds an IPv4 address (NAT64 under
// blocking.nat64_prefixes, 6to4) also as that IPv4 address: reaching it
// reaches the IPv4 host. at is the address whose range matched.
func (p *Policy) lookupAddr(a netip.Addr) (r ipRule, at netip.Addr, ok bool) {
	if r, _, ok := p.ipRanges.Lookup(a); ok {
		return r, a, true
	}
	if v4, emb := iptable.Embedded(a, p.Config.Blocking.NAT64Prefixes); emb {
		if r, _, ok := p.ipRanges.Lookup(v4); ok {
			return r, v4, true
		}
	}
	return ipRule{}, netip.Addr{}, false
}

// rank orders actions for Inspect: an app found in the answer replaces the
// decision only with an action that ranks higher.
func rank(a Action) int {
	switch a {
	case ActionBlock:
		return 3
	case ActionExempt:
		return 2
	case ActionMonitor:
		return 1
	}
	return 0
}

// Inspect applies the findings of the upstream's answer to d, the decision
// for its query. When an app found has an action for d's group that ranks
// above d's (blocked, then exempted, then monitored, then resolved), d
// becomes that app's decision, with Via and Found saying where in the
// answer it was found; of several, the highest-ranking action wins, then
// the first in the answer. Findings of the app whose allow rule matched the
// query name are ignored: the administrator allowed that name. It reports
// whether d changed, and allocates nothing.
func (p *Policy) Inspect(d *Decision, found []Finding) bool {
	if len(found) == 0 || d.Group == nil || d.Group.Allowlist {
		// In an allowlist group the targets of an approved name's answer
		// are followed, not judged again.
		return false
	}
	best, bestRank := -1, rank(d.Action)
	for i := range found {
		f := &found[i]
		if f.App >= len(d.Group.actions) || f.App >= len(p.Set.Apps) {
			continue // not this policy's (cannot happen: findings are per policy)
		}
		if d.Match.Kind == blocklists.KindAllow && d.Match.App != nil && d.Match.App.ID == f.App {
			continue
		}
		if r := rank(d.Group.actions[f.App]); r > bestRank {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		return false
	}
	f := &found[best]
	d.Action = d.Group.actions[f.App]
	d.Match = p.findingMatch(f)
	d.Via, d.Found = f.Via, f.Found
	return true
}

// findingMatch returns the rule behind a finding of this policy.
func (p *Policy) findingMatch(f *Finding) blocklists.Match {
	app := p.Set.Apps[f.App]
	if f.Via == ViaIP {
		if r, _, ok := p.ipRanges.Lookup(f.Addr); ok && r.app == app {
			return blocklists.Match{App: app, Rule: r.text, Kind: blocklists.KindIPRange, Origin: app.Origin}
		}
	} else if m, ok := p.Set.Matcher.Match(f.Found); ok && m.App == app {
		return m
	}
	return blocklists.Match{App: app, Rule: f.Found, Origin: app.Origin}
}

// MatchAddr returns the ip_ranges rule that an answer address falls in
// (itself, or the IPv4 address a NAT64 or 6to4 address embeds), and false
// when no app lists it.
func (p *Policy) MatchAddr(a netip.Addr) (blocklists.Match, bool) {
	r, _, ok := p.lookupAddr(a.Unmap())
	if !ok {
		return blocklists.Match{}, false
	}
	return blocklists.Match{App: r.app, Rule: r.text, Kind: blocklists.KindIPRange, Origin: r.app.Origin}, true
}
