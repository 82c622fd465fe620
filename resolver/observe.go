package resolver

import (
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/resolver/policy"
)

// observer is what the observe step needs for one State: the metric series
// of its policy, resolved when the State is installed, and its query log
// settings.
type observer struct {
	series    *metrics.QuerySeries
	logAll    bool // log.query_log_scope = "all"
	anonymize bool // log.anonymize_clients
}

// install completes st with its generation and its observer before it
// serves queries. The series of groups and apps that the previous policy
// had and st's has not are deleted. Swap holds installMu around it and the
// store.
func (h *Handler) install(st *State) {
	h.generations++
	st.generation = h.generations
	o := &observer{}
	if st.Policy != nil {
		l := st.Policy.Config.Log
		o.logAll, o.anonymize = l.QueryLogScope == "all", l.AnonymizeClients
		if h.metrics != nil {
			var prev *metrics.QuerySeries
			if old := h.state.Load(); old != nil && old.obs != nil {
				prev = old.obs.series
			}
			o.series = h.metrics.QuerySeries(st.Policy, prev)
		}
	}
	st.obs = o
}

// observe records an answered query in the metrics and the query log. It
// only reads the decision and the reply: observers never steer.
func (h *Handler) observe(st *State, d *policy.Decision, client netip.Addr, req *dns.Msg, rcode int, start time.Time) {
	took := time.Since(start)
	o := st.obs
	if o.series != nil {
		o.series.Observe(d, rcode, took)
	}
	ql := h.querylog.Load()
	if ql == nil || !o.logAll && !d.Action.AppAction() {
		return
	}
	if o.anonymize {
		client = querylog.Anonymize(client)
	}
	e := querylog.Entry{
		Time:     start,
		Client:   client,
		Action:   d.Action.String(),
		Rcode:    rcode,
		Duration: took,
	}
	if d.Group != nil {
		e.Group = d.Group.Name
	}
	if len(req.Question) > 0 {
		e.Name, e.Type = req.Question[0].Name, req.Question[0].Qtype
	}
	if d.Match.App != nil {
		e.App, e.Rule = d.Match.App.Name, d.Match.Rule
	}
	e.Via, e.Found = d.Via.String(), d.Found
	ql.Log(e)
}

// SetQueryLog makes the handler log queries to l (nil: no query log) and
// returns the logger it used before, which the caller closes.
func (h *Handler) SetQueryLog(l *querylog.Logger) *querylog.Logger {
	return h.querylog.Swap(l)
}

// Dropped counts a request from client that is dropped without an answer
// (rate limited, or a packet that cannot be parsed) in
// appfence_queries_total{action="dropped"} of the client's group. It is
// not logged in the query log: a flood must not fill it.
func (h *Handler) Dropped(client netip.Addr) {
	st := h.state.Load()
	if st.obs.series != nil {
		st.obs.series.Dropped(st.Policy.GroupOf(client))
	}
}
