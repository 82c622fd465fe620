package resolver

import (
	"encoding/binary"
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
func (h *Handler) observe(st *State, d *policy.Decision, client netip.Addr, q question, rcode int, start time.Time) {
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
	e.Name, e.Type = q.nameType()
	if d.Match.App != nil {
		e.App, e.Rule = d.Match.App.Name, d.Match.Rule
	}
	e.Via, e.Found = d.Via.String(), d.Found
	ql.Log(e)
}

// question is the question of an observed query, for the query log: that
// of a dns.Msg, or of the packet of a query answered by the fast path,
// read only when it is logged.
type question struct {
	msg *dns.Msg
	raw []byte
}

// nameType returns the question's name, as the client wrote it, and type;
// "" and 0 for a query without a question.
func (q question) nameType() (string, uint16) {
	if q.msg != nil {
		if len(q.msg.Question) == 0 {
			return "", 0
		}
		return q.msg.Question[0].Name, q.msg.Question[0].Qtype
	}
	name, off, err := dns.UnpackDomainName(q.raw, headerLen)
	if err != nil || off+2 > len(q.raw) {
		return "", 0
	}
	return name, binary.BigEndian.Uint16(q.raw[off:])
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
