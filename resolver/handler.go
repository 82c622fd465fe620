package resolver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/resolver/policy"
	"github.com/appfence/appfence/resolver/upstream"
)

// State is everything a query needs that a reload may replace. It is
// immutable; Handler.Swap replaces it whole.
type State struct {
	Policy   *policy.Policy
	Upstream *upstream.Router

	obs *observer // set by Handler.install
}

// Handler answers DNS queries: it is the pipeline from the request to the
// answer. Data flows one way: decision, then block answer or upstream, then
// the reply; metrics and logs observe the result.
type Handler struct {
	state     atomic.Pointer[State]
	installMu sync.Mutex // serializes Swap, so each install sees the state it replaces
	metrics   *metrics.Metrics
	querylog  atomic.Pointer[querylog.Logger]
	log       *slog.Logger
}

// NewHandler returns a handler serving st. m and log may be nil.
func NewHandler(st *State, m *metrics.Metrics, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{metrics: m, log: log}
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

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	client := clientAddr(w.RemoteAddr())
	st := h.state.Load()
	resp, d := h.answer(st, req, client)
	if resp == nil {
		return
	}
	var ede *dns.EDNS0_EDE
	if d.Action == policy.ActionBlock && st.Policy.Config.Blocking.ExtendedErrors {
		ede = &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: blockText(&d)}
	}
	finish(req, resp, udp, ede)
	if err := w.WriteMsg(resp); err != nil {
		h.log.Debug("write reply", "client", client, "err", err)
	}
	h.observe(st, &d, client, resp, start)
}

// answer decides and builds the reply (not yet finished for the client).
func (h *Handler) answer(st *State, req *dns.Msg, client netip.Addr) (*dns.Msg, policy.Decision) {
	p := st.Policy
	if !p.Allowed(client) {
		return errorReply(req, dns.RcodeRefused), policy.Decision{Action: policy.ActionRefuse, Group: p.GroupOf(client)}
	}
	if req.Opcode != dns.OpcodeQuery {
		return errorReply(req, dns.RcodeNotImplemented), policy.Decision{Group: p.GroupOf(client)}
	}
	if len(req.Question) != 1 {
		return errorReply(req, dns.RcodeFormatError), policy.Decision{Group: p.GroupOf(client)}
	}
	name := dnsname.Canonical(req.Question[0].Name)
	d := p.Decide(client, name)
	if d.Action == policy.ActionBlock {
		return blockAnswer(p, req, name, &d), d
	}
	return h.forward(st, req, name), d
}

// forward resolves the query upstream; SERVFAIL when no upstream answers.
func (h *Handler) forward(st *State, req *dns.Msg, name string) *dns.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), upstreamBudget)
	defer cancel()
	resp, err := st.Upstream.Exchange(ctx, upstreamQuery(req, name), name)
	if err != nil {
		h.log.Debug("upstream failed", "name", name, "err", err)
		return errorReply(req, dns.RcodeServerFailure)
	}
	return resp
}

// upstreamBudget bounds the whole upstream resolution of one query; each
// attempt is bounded by upstream.timeout.
const upstreamBudget = 30 * time.Second

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
