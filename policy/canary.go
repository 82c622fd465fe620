package policy

import "github.com/appfence/appfence/blocklists"

// CanaryApp is the app of the built-in catalog that the canary names
// belong to, and under which canary answers are counted.
const CanaryApp = "encrypted-dns"

// isCanary reports whether name, canonical, is a canary: a name that
// devices ask to learn whether the network wants them to keep using its
// resolver. A negative answer tells them so:
//
//   - use-application-dns.net: Firefox does not turn on its own DNS over
//     HTTPS when this name does not resolve (Mozilla's "canary domain").
//   - mask.icloud.com and mask-h2.icloud.com: Apple devices do not use iCloud
//     Private Relay (which would hide their DNS and traffic) when these do
//     not resolve.
//
// It does not allocate.
func isCanary(name string) bool {
	switch name {
	case "use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com":
		return true
	}
	return false
}

// canary returns the decision for a canary name while some app is blocked
// for some group: blocked, answered NXDOMAIN whatever blocking.response
// says (what the devices look for), for every group, including groups that
// are exempted from the blocked apps, because encrypted DNS on their devices
// would bypass every other rule too. The one exception is a group that
// exempts CanaryApp itself (group allow = ["encrypted-dns"], with it blocked
// or monitored elsewhere): an administrator let those devices use encrypted
// DNS, so the canary resolves for them (exempted).
func (p *Policy) canary(d Decision, name string) Decision {
	app := p.canaryApp
	d.Via = ViaCanary
	d.Action = ActionBlock
	if d.Group.Action(app) == ActionExempt {
		d.Action = ActionExempt
	}
	m, ok := p.Set.Matcher.Match(name)
	if !ok || m.App != app || m.Kind == blocklists.KindAllow {
		m = blocklists.Match{App: app, Rule: name, Kind: blocklists.KindExact, Origin: app.Origin}
	}
	d.Match = m
	return d
}
