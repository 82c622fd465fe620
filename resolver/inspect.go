package resolver

import (
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/cache"
)

// Answer inspection (blocking.inspect_cnames): an upstream answer that
// points at an app blocked for the client's group, through a CNAME or DNAME
// target, an HTTPS/SVCB target, or an address in the app's ip_ranges, is
// replaced by that app's block answer. It is the step between the cache or
// upstream and the reply.
//
// Which apps an answer points at (policy.Findings) does not depend on the
// client, so it is worked out once per answer: for a cached answer once per
// entry and policy generation, kept in the entry, so that a hit unpacks
// nothing and only checks the entry's findings (none, for almost every
// answer) against the client's group (policy.Inspect). The cache keeps the
// upstream's answer whatever the findings: each query gets the answer its
// own group is due.

// inspectEntry applies the findings of cache entry e to d, and reports
// whether the query is now blocked. The findings are worked out when e has
// none for st's generation, from m when the caller has e unpacked already
// (nil otherwise), and kept in e.
func inspectEntry(st *State, e *cache.Entry, m *dns.Msg, now time.Time, d *policy.Decision) bool {
	p := st.Policy
	if !p.Inspects() {
		return false
	}
	kept, ok := e.Findings(st.generation)
	found, _ := kept.([]policy.Finding)
	if !ok {
		if m == nil {
			var err error
			if m, err = e.Msg(now); err != nil {
				return false // served (or failed) as it is by the caller
			}
		}
		found = p.Findings(m)
		e.SetFindings(st.generation, found)
	}
	return p.Inspect(d, found) && d.Action == policy.ActionBlock
}

// inspectMsg applies the findings of an upstream answer that is not cached
// (the cache is off, or the answer cannot be cached) to d, and reports
// whether the query is now blocked.
func inspectMsg(st *State, m *dns.Msg, d *policy.Decision) bool {
	p := st.Policy
	if !p.Inspects() {
		return false
	}
	return p.Inspect(d, p.Findings(m)) && d.Action == policy.ActionBlock
}
