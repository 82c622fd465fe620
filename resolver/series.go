package resolver

import (
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
)

// actionDropped is the action label of requests dropped without an answer
// (rate limited, malformed). It is not a policy.Action: the policy answers
// every query it sees; dropping happens before it.
const actionDropped = "dropped"

// appActions are the actions appfence_app_queries_total counts.
var appActions = []policy.Action{policy.ActionBlock, policy.ActionExempt, policy.ActionMonitor}

// initialRcodes are the response codes whose series exist from the start
// for every group, so that ratios such as SERVFAIL / all see a zero rather
// than nothing. Other codes get their series when first sent.
var initialRcodes = []int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure, dns.RcodeRefused}

// namedRcodes is the number of response codes resolved through a table;
// the rare codes above it go through the vector.
const namedRcodes = 24

// querySeries are the per-query series of one policy, on the collectors
// of package metrics: for each group a
// counter per action, per app and action, per response code, and the
// latency histogram. They are resolved once when the policy is installed,
// so counting a query is indexing and atomic adds, without the label
// lookups of WithLabelValues.
//
// Every group × action, group × referenced app × app action, group ×
// common rcode and group histogram exists from the start at zero, so that
// dashboards and alerts see zeros rather than missing series.
type querySeries struct {
	m      *metrics.Metrics
	groups []groupSeries // by policy.Group.Index
	apps   []string      // the apps the config names
	// retired is set when a newer querySeries replaces this one; its
	// queries in flight then no longer create series.
	retired atomic.Bool
}

type groupSeries struct {
	name string
	// actions is indexed by policy.Action; the last one counts dropped
	// requests.
	actions []prometheus.Counter
	// apps is indexed by blocklists.App.ID, then policy.Action; nil for apps
	// the config does not name, which never get an app action.
	apps     [][]prometheus.Counter
	rcodes   [namedRcodes]atomic.Pointer[prometheus.Counter]
	duration prometheus.Observer
}

// newQuerySeries resolves the series of policy p on m. prev is the series
// of the policy p replaces, or nil: the series of groups and apps that p
// no longer has are deleted, so they stop being exported.
func newQuerySeries(m *metrics.Metrics, p *policy.Policy, prev *querySeries) *querySeries {
	s := &querySeries{m: m, apps: referencedApps(p)}
	s.groups = make([]groupSeries, len(p.Groups))
	for _, g := range p.Groups {
		gs := &s.groups[g.Index]
		gs.name = g.Name
		gs.actions = make([]prometheus.Counter, len(policy.Actions)+1)
		for _, a := range policy.Actions {
			gs.actions[a] = m.Queries.WithLabelValues(g.Name, a.String())
		}
		gs.actions[len(policy.Actions)] = m.Queries.WithLabelValues(g.Name, actionDropped)
		gs.apps = make([][]prometheus.Counter, len(p.Set.Apps))
		for _, name := range s.apps {
			row := make([]prometheus.Counter, len(policy.Actions))
			for _, a := range appActions {
				row[a] = m.AppQueries.WithLabelValues(g.Name, name, a.String())
			}
			gs.apps[p.Set.App(name).ID] = row
		}
		for _, rc := range initialRcodes {
			c := m.Responses.WithLabelValues(g.Name, dnswire.RcodeName(rc))
			gs.rcodes[rc].Store(&c)
		}
		gs.duration = m.QueryDuration.WithLabelValues(g.Name)
	}
	if prev != nil {
		prev.retired.Store(true)
		s.deleteStale(prev)
	}
	return s
}

// deleteStale deletes the series of prev's groups and apps that s does not
// have.
func (s *querySeries) deleteStale(prev *querySeries) {
	groups := map[string]bool{}
	for i := range s.groups {
		groups[s.groups[i].name] = true
	}
	for i := range prev.groups {
		name := prev.groups[i].name
		if groups[name] {
			continue
		}
		l := prometheus.Labels{"group": name}
		s.m.Queries.DeletePartialMatch(l)
		s.m.AppQueries.DeletePartialMatch(l)
		s.m.Responses.DeletePartialMatch(l)
		s.m.QueryDuration.DeletePartialMatch(l)
	}
	apps := map[string]bool{}
	for _, a := range s.apps {
		apps[a] = true
	}
	for _, a := range prev.apps {
		if !apps[a] {
			s.m.AppQueries.DeletePartialMatch(prometheus.Labels{"app": a})
		}
	}
}

// referencedApps returns the apps the config names in a block, monitor or
// allow list, each once, in the order of the app set, and the canary app
// while any app is blocked (canary answers are counted under it). Only
// they can have an action other than resolved.
func referencedApps(p *policy.Policy) []string {
	named := map[string]bool{policy.CanaryApp: p.AnyBlocked()}
	add := func(refs []config.AppRef) {
		for _, r := range refs {
			named[r.Name] = true
		}
	}
	add(p.Config.Blocking.Block)
	add(p.Config.Blocking.Monitor)
	for _, g := range p.Config.Groups {
		add(g.Allow)
		add(g.Block)
	}
	var out []string
	for _, a := range p.Set.Apps {
		if named[a.Name] {
			out = append(out, a.Name)
		}
	}
	return out
}

// Observe counts one answered query: its decision, the response code of
// the reply and the time from the query to the reply.
func (s *querySeries) Observe(d *policy.Decision, rcode int, took time.Duration) {
	g := s.group(d.Group)
	if int(d.Action) < len(policy.Actions) {
		g.actions[d.Action].Inc()
	} else {
		s.m.Queries.WithLabelValues(g.name, d.Action.String()).Inc()
	}
	if app := d.Match.App; app != nil && d.Action.AppAction() {
		g.app(s, app, d.Action).Inc()
	}
	g.rcode(s, rcode).Inc()
	g.duration.Observe(took.Seconds())
}

// Dropped counts a request from a client of group g that was dropped
// without an answer: appfence_queries_total{action="dropped"}. g nil is
// the default group.
func (s *querySeries) Dropped(g *policy.Group) {
	gs := s.group(g)
	gs.actions[len(gs.actions)-1].Inc()
}

func (s *querySeries) group(g *policy.Group) *groupSeries {
	if g == nil || g.Index >= len(s.groups) {
		return &s.groups[0]
	}
	return &s.groups[g.Index]
}

// app returns the counter of an app and action; one the config does not
// name (which the policy cannot produce) goes through the vector.
func (g *groupSeries) app(s *querySeries, app *blocklists.App, a policy.Action) prometheus.Counter {
	if app.ID < len(g.apps) {
		if row := g.apps[app.ID]; row != nil && row[a] != nil {
			return row[a]
		}
	}
	return s.m.AppQueries.WithLabelValues(g.name, app.Name, a.String())
}

// rcode returns the counter of a response code, creating its series on
// first use.
func (g *groupSeries) rcode(s *querySeries, rcode int) prometheus.Counter {
	if rcode < 0 || rcode >= namedRcodes {
		return s.m.Responses.WithLabelValues(g.name, dnswire.RcodeName(rcode))
	}
	if c := g.rcodes[rcode].Load(); c != nil {
		return *c
	}
	if s.retired.Load() {
		// The policy was replaced: do not recreate series it may have
		// deleted. The count is lost, like that of any deleted series.
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "discarded"})
	}
	c := s.m.Responses.WithLabelValues(g.name, dnswire.RcodeName(rcode))
	g.rcodes[rcode].Store(&c)
	return c
}
