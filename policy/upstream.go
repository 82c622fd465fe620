package policy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnsname"
)

// upstreamWarnings warns about DoT and DoH upstreams written as a host name
// that this policy blocks for the machine itself (the group of 127.0.0.1 or
// ::1). AppFence's own connections to its upstreams never go through the
// policy, but such a name is resolved by the system's resolver when a
// connection is opened, and when that resolver is AppFence it gets the
// block answer.
func (p *Policy) upstreamWarnings() []string {
	servers := p.Config.Upstream.Servers
	for _, f := range p.Config.Upstream.Forward {
		servers = append(servers[:len(servers):len(servers)], f.Servers...)
	}
	var out []string
	for _, s := range servers {
		if s.Proto == config.ProtoDNS {
			continue
		}
		host, _, err := net.SplitHostPort(s.Addr)
		if err != nil {
			host = s.Addr
		}
		if _, err := netip.ParseAddr(host); err == nil {
			continue
		}
		name := dnsname.Canonical(dns.Fqdn(host))
		for _, lo := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()} {
			if d := p.decide(p.GroupOf(lo), name); d.Action == ActionBlock {
				out = append(out, fmt.Sprintf("%s: upstream %q: its host %s is blocked for group %q (app %q), so it cannot be resolved when this machine's resolver is AppFence; write its address (tls://IP#name, https://name/dns-query#IP)",
					p.Config.File, s.Raw, name, d.Group.Name, d.App()))
				break
			}
		}
	}
	return out
}
