package resolver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
	"github.com/appfence/appfence/resolver/cache"
	"github.com/appfence/appfence/resolver/upstream"
)

// State is everything a query needs that a reload may replace. The
// Handler completes it when it installs it (NewHandler, Swap: the observer
// and the generation below), before any query can see it; from then on it
// is not changed, and Swap replaces it whole. A State is installed once,
// in one Handler.
type State struct {
	Policy   *policy.Policy
	Upstream *upstream.Router

	obs *observer // set by Handler.install
	// generation numbers the states a handler installs, from 1: the
	// findings kept with a cache entry are those of one generation.
	generation uint64
}

// Handler answers DNS queries: it is the pipeline from the request to the
// answer. Data flows one way: decision, then block answer or cache and
// upstream, then inspection of the answer, then the reply; metrics and logs
// observe the result.
type Handler struct {
	// ctx is the handler's lifetime, the parent of the queries that
	// ServeDNS answers (the listeners pass their own, see serve).
	ctx         context.Context
	state       atomic.Pointer[State]
	installMu   sync.Mutex // serializes Swap, so each install sees the state it replaces
	generations uint64     // states installed; guarded by installMu
	cache       *cache.Cache
	metrics     *metrics.Metrics
	querylog    atomic.Pointer[querylog.Logger]
	dnstap      atomic.Pointer[dnstap.Writer]
	log         *slog.Logger
	// buffers hold the replies built from cache entries (*[]byte).
	buffers sync.Pool
	// upstreamPlaces bounds the upstream queries in flight.
	upstreamPlaces places
	// shares bound the upstream places one client, and one zone, may take
	// (upstream.max_in_flight_per_client and _per_zone; share.go).
	shares     upstream.Shares
	busyLogged atomic.Int64 // UnixNano of the last busyLog
	shedLogged atomic.Int64 // UnixNano of the last shedLog
	// ddr holds the SVCB records of the encrypted listeners (ddr.go).
	ddr atomic.Pointer[[]dns.RR]
}

// NewHandler returns a handler serving st. The cache c outlives states: a
// reload swaps the state and keeps the cache. c, m and log may be nil; a
// nil c (or a disabled one) sends every query upstream. ctx is the
// handler's lifetime: a query that ServeDNS answers waits for the upstream
// until ctx is done at the latest.
func NewHandler(ctx context.Context, st *State, c *cache.Cache, m *metrics.Metrics, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{ctx: ctx, cache: c, metrics: m, log: log}
	h.upstreamPlaces.max.Store(maxUpstreamInFlight)
	h.buffers.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	h.install(st)
	h.state.Store(st)
	return h
}

// Swap installs a new state and returns the old one. Queries already being
// answered finish with the state they started with.
func (h *Handler) Swap(st *State) *State {
	h.installMu.Lock()
	defer h.installMu.Unlock()
	h.install(st)
	return h.state.Swap(st)
}

// State returns the state in use.
func (h *Handler) State() *State { return h.state.Load() }

// ServeDNS implements dns.Handler, with the handler's lifetime as the
// query's context.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) { h.serve(h.ctx, w, req) }

// serve answers req and sends the reply to w. ctx is the query's: the
// listener's lifetime, done when it shuts down, so that no query waits
// for an upstream beyond the shutdown.
func (h *Handler) serve(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	client := clientAddr(w.RemoteAddr())
	src := sourceOf(w, udp)
	tw := h.tapWriter(w)
	if tw != nil {
		w = tw
	}
	st := h.state.Load()
	resp, name, d := h.answer(st, req, client, src.id)
	var rcode int
	switch {
	case resp == nil && req.Question[0].Qtype == dns.TypeANY:
		rcode = h.write(w, req, h.answerANY(ctx, st, req, name, client), udp, nil)
	case resp == nil:
		rcode = h.resolve(ctx, st, w, req, name, client, udp, &d)
	default:
		rcode = h.write(w, req, resp, udp, blockEDE(st.Policy, &d))
	}
	h.observe(st, &d, client, src, question{msg: req}, rcode, start)
	tw.send(&d, src, req, start)
}

// refuse answers req with REFUSED without deciding it: a TCP query over
// server.rate_limit. It is counted as refused.
func (h *Handler) refuse(w dns.ResponseWriter, req *dns.Msg, client netip.Addr) {
	start := time.Now()
	st := h.state.Load()
	src := sourceOf(w, false)
	tw := h.tapWriter(w)
	if tw != nil {
		w = tw
	}
	rcode := h.write(w, req, errorReply(req, dns.RcodeRefused), false, nil)
	d := policy.Decision{Action: policy.ActionRefuse, Group: st.Policy.GroupFor(client, src.id)}
	h.observe(st, &d, client, src, question{msg: req}, rcode, start)
	tw.send(&d, src, req, start)
}

// identified is a dns.ResponseWriter of an encrypted transport, which
// knows more of the client than its address (identity.go), and its
// transport.
type identified interface {
	identity() *policy.Identity
	transport() string
}

// answer decides. It returns the reply of a query answered here (refused,
// malformed, blocked, other classes, zone transfers), or nil and the
// canonical name for a query to resolve (ANY: see answerANY). id is the client's identity beyond its address,
// nil on UDP and TCP.
func (h *Handler) answer(st *State, req *dns.Msg, client netip.Addr, id *policy.Identity) (*dns.Msg, string, policy.Decision) {
	p := st.Policy
	if !p.Allowed(client) {
		return errorReply(req, dns.RcodeRefused), "", policy.Decision{Action: policy.ActionRefuse, Group: p.GroupFor(client, id)}
	}
	if rcode := check(req); rcode != dns.RcodeSuccess {
		return errorReply(req, rcode), "", policy.Decision{Group: p.GroupFor(client, id)}
	}
	if resp := classAnswer(req, &p.Config.Server); resp != nil {
		return resp, "", policy.Decision{Group: p.GroupFor(client, id)}
	}
	name := dnsname.Canonical(req.Question[0].Name)
	d := p.DecideFor(client, id, name)
	switch {
	case d.Action == policy.ActionBlock:
		return blockAnswer(p, req, name, &d), name, d
	case req.Question[0].Qtype == dns.TypeAXFR, req.Question[0].Qtype == dns.TypeIXFR:
		return errorReply(req, dns.RcodeRefused), name, d // a forwarder transfers no zones
	case dnsname.IsSubdomain(name, resolverArpa):
		return h.resolverArpaAnswer(req), name, d
	}
	return nil, name, d
}

// resolve answers a query the policy lets through, from the cache or the
// upstream, and returns the rcode sent. A fresh entry is served from its
// bytes; a miss waits for the (shared) upstream query and is served from the
// entry it stored, through finish like any other reply. Every answer is
// inspected first (inspect.go): when it points at an app blocked for the
// client's group, d becomes that block and the client gets the block
// answer; the cache keeps the upstream's answer. ctx bounds the wait for
// the upstream, and so does upstreamBudget (fetch).
func (h *Handler) resolve(ctx context.Context, st *State, w dns.ResponseWriter, req *dns.Msg, name string, client netip.Addr, udp bool, d *policy.Decision) int {
	c := h.cache
	if !c.Enabled() {
		resp := h.forward(ctx, st, req, name, client)
		if inspectMsg(st, resp, d) {
			return h.writeBlock(st, w, req, name, udp, d)
		}
		return h.write(w, req, resp, udp, nil)
	}
	key := cache.KeyOf(req, name)
	now := c.Now()
	e, fresh := c.Lookup(key, now)
	if fresh {
		if c.Hit(e, now) {
			c.Refresh(key, h.fetch(st, req, name, client))
		}
		if inspectEntry(st, e, nil, now, d) {
			return h.writeBlock(st, w, req, name, udp, d)
		}
		return h.writeEntry(w, req, e, now, udp)
	}
	// The wait needs no bound of its own: the upstream query it waits for
	// ends within upstreamBudget (fetch).
	a := c.Resolve(ctx, key, e, h.fetch(st, req, name, client))
	now = c.Now()
	switch {
	case a.Stale:
		if inspectEntry(st, a.Entry, nil, now, d) {
			return h.writeBlock(st, w, req, name, udp, d)
		}
		return h.writeEntry(w, req, a.Entry, now, udp)
	case a.Entry != nil:
		// Inspected from the upstream's answer, already unpacked, and
		// served from the entry's bytes like a hit.
		if inspectEntry(st, a.Entry, a.Source, now, d) {
			return h.writeBlock(st, w, req, name, udp, d)
		}
		return h.writeEntry(w, req, a.Entry, now, udp)
	case a.Msg != nil:
		if inspectMsg(st, a.Msg, d) {
			return h.writeBlock(st, w, req, name, udp, d)
		}
		return h.write(w, req, a.Msg.Copy(), udp, nil)
	}
	h.log.Debug("upstream failed", "name", name, "err", a.Err)
	return h.write(w, req, upstreamAnswer(req, nil, a.Err), udp, nil)
}

// answerANY returns the answer to an ANY query that is not blocked: RFC
// 8482's HINFO (anyAnswer) when the name exists, the upstream's NXDOMAIN
// with its SOA when it does not, and SERVFAIL when the upstream does not
// say. Whether the name exists is asked as an A query, through the cache:
// the upstream is never asked for ANY, whose answer is the largest.
func (h *Handler) answerANY(ctx context.Context, st *State, req *dns.Msg, name string, client netip.Addr) *dns.Msg {
	a := req.Copy()
	a.Question[0].Qtype = dns.TypeA
	resp, err := h.lookup(ctx, st, a, name, client)
	switch {
	case err != nil:
		h.log.Debug("upstream failed", "name", name, "err", err)
		return upstreamAnswer(req, nil, err)
	case resp.Rcode == dns.RcodeServerFailure:
		return resp
	case resp.Rcode == dns.RcodeNameError && !owns(resp, req.Question[0].Name):
		nx := errorReply(req, dns.RcodeNameError)
		nx.Ns = resp.Ns
		return nx
	}
	return anyAnswer(req)
}

// owns reports whether resp, an answer that follows CNAMEs, has a record
// owned by name: the name exists although the chain ends in NXDOMAIN.
func owns(resp *dns.Msg, name string) bool {
	for _, rr := range resp.Answer {
		if dnsname.Equal(rr.Header().Name, name) {
			return true
		}
	}
	return false
}

// lookup returns the answer to req, a query the policy lets through, from
// the cache or the upstream, without sending it: the same entries and the
// same upstream queries as resolve.
func (h *Handler) lookup(ctx context.Context, st *State, req *dns.Msg, name string, client netip.Addr) (*dns.Msg, error) {
	c := h.cache
	if !c.Enabled() {
		return h.fetch(st, req, name, client)(ctx)
	}
	key := cache.KeyOf(req, name)
	e, fresh := c.Lookup(key, c.Now())
	if fresh {
		return e.Msg(c.Now())
	}
	a := c.Resolve(ctx, key, e, h.fetch(st, req, name, client)) // bounded by fetch
	switch {
	case a.Entry != nil:
		return a.Entry.Msg(c.Now())
	case a.Msg != nil:
		return a.Msg.Copy(), nil
	}
	return nil, a.Err
}

// fetch returns how the cache asks the upstream for req, a query of
// client. It holds one of the handler's upstream places while it does, and
// one of the client's and of the name's zone's shares of them: without a
// free one it fails at once (SERVFAIL, or a stale answer), so that queries
// do not pile up behind a slow upstream, and a flood costs its sender and
// its zone, not everyone.
func (h *Handler) fetch(st *State, req *dns.Msg, name string, client netip.Addr) cache.Fetch {
	q := upstreamQuery(req, name)
	return func(ctx context.Context) (*dns.Msg, error) {
		key, zone := clientKey(client), upstream.Zone(name)
		if err := h.shares.Take(key, zone, shareLimits(st)); err != nil {
			h.shed(err)
			return nil, err
		}
		defer h.shares.Give(key, zone)
		if !h.upstreamPlaces.take() {
			h.busyLog()
			return nil, errUpstreamBusy
		}
		defer h.upstreamPlaces.give()
		dt := h.dnstap.Load()
		start := time.Now()
		// A deadline value, not a context.WithTimeout: no timer per query.
		resp, err := st.Upstream.ExchangeWithin(ctx, q, name, start.Add(upstreamBudget))
		if dt != nil {
			tapForwarder(dt, q, resp, start) // what the upstream sent
		}
		if err == nil {
			resp = upstreamAnswer(q, resp, nil)
		}
		return resp, err
	}
}

// forward resolves the query upstream without the cache; SERVFAIL when no
// upstream answers or ctx is done.
func (h *Handler) forward(ctx context.Context, st *State, req *dns.Msg, name string, client netip.Addr) *dns.Msg {
	resp, err := h.fetch(st, req, name, client)(ctx)
	if err != nil {
		h.log.Debug("upstream failed", "name", name, "err", err)
		return upstreamAnswer(req, nil, err)
	}
	return resp
}

// upstreamBudget bounds the whole upstream resolution of one query; each
// attempt is bounded by upstream.timeout.
const upstreamBudget = 30 * time.Second

// writeBlock sends the block answer of a query decided d (blocked) and
// returns its rcode.
func (h *Handler) writeBlock(st *State, w dns.ResponseWriter, req *dns.Msg, name string, udp bool, d *policy.Decision) int {
	return h.write(w, req, blockAnswer(st.Policy, req, name, d), udp, blockEDE(st.Policy, d))
}

// maxUpstreamInFlight bounds the upstream queries in flight (cache misses,
// prefetches; identical misses share one). A busy network needs a few
// hundred (queries per second to upstream times the upstream's latency);
// when the upstream stops answering, every miss waits upstream.timeout for
// each server, and the queries beyond the bound get SERVFAIL at once
// instead of waiting in line.
const maxUpstreamInFlight = 1024

var errUpstreamBusy = errors.New("too many upstream queries in flight")

// busyLog logs that the upstream places are all taken, at most once a
// minute.
func (h *Handler) busyLog() {
	now := time.Now().UnixNano()
	last := h.busyLogged.Load()
	if now-last < int64(time.Minute) || !h.busyLogged.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("upstream queries in flight at the limit: answering SERVFAIL (or stale) to more",
		"limit", h.upstreamPlaces.max.Load())
}

// write finishes resp for the client, sends it and returns its rcode. A
// SERVFAIL without ede gets one (finish).
func (h *Handler) write(w dns.ResponseWriter, req, resp *dns.Msg, udp bool, ede *dns.EDNS0_EDE) int {
	finish(req, resp, udp, ede)
	if err := w.WriteMsg(resp); err != nil {
		h.log.Debug("write reply", "client", w.RemoteAddr().String(), "err", err)
	}
	return resp.Rcode
}

// writeEntry sends the reply from a cache entry: its bytes patched for the
// client (no unpacking), or through writeEntryMsg when that reply would not
// fit the client's UDP size.
func (h *Handler) writeEntry(w dns.ResponseWriter, req *dns.Msg, e *cache.Entry, now time.Time, udp bool) int {
	var qname [maxNameLen]byte
	n, err := dns.PackDomainName(req.Question[0].Name, qname[:], 0, nil, false)
	if err != nil {
		return h.writeEntryMsg(w, req, e, nil, now, udp)
	}
	r := cache.Request{
		ID:      req.Id,
		QName:   qname[:n],
		RD:      req.RecursionDesired,
		CD:      req.CheckingDisabled,
		AD:      req.AuthenticatedData,
		Payload: ednsSize,
	}
	opt := req.IsEdns0()
	if opt != nil {
		r.EDNS, r.DO = true, opt.Do()
	}
	if udp {
		r.Limit = udpLimit(opt)
	}
	bp := h.buffers.Get().(*[]byte)
	defer h.buffers.Put(bp)
	b, ok := e.AppendReply((*bp)[:0], &r, now)
	*bp = b[:0]
	if !ok {
		return h.writeEntryMsg(w, req, e, nil, now, udp)
	}
	if _, err := w.Write(b); err != nil {
		h.log.Debug("write reply", "client", w.RemoteAddr().String(), "err", err)
	}
	return e.Rcode()
}

// writeEntryMsg sends the reply from a cache entry built as a message and
// finished like any other reply: after a miss, and when the reply must be
// truncated. resp is the entry unpacked at now, or nil to unpack it here. A
// stale answer carries EDE 3 "Stale Answer".
func (h *Handler) writeEntryMsg(w dns.ResponseWriter, req *dns.Msg, e *cache.Entry, resp *dns.Msg, now time.Time, udp bool) int {
	if resp == nil {
		var err error
		if resp, err = e.Msg(now); err != nil {
			h.log.Error("cached answer", "name", req.Question[0].Name, "err", err)
			return h.write(w, req, errorReply(req, dns.RcodeServerFailure), udp,
				&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "cached answer unreadable"})
		}
	}
	var ede *dns.EDNS0_EDE
	if e.Expired(now) {
		ede = &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer}
	}
	return h.write(w, req, resp, udp, ede)
}

// maxNameLen is the length of the longest domain name in wire format.
const maxNameLen = 255

// clientAddr returns the client's address, IPv4-mapped addresses unmapped.
func clientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
