package resolver

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
)

// observer is what the observe step needs for one State: the metric series
// of its policy, resolved when the State is installed, and its query log
// settings.
type observer struct {
	series    *querySeries
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
			var prev *querySeries
			if old := h.state.Load(); old != nil && old.obs != nil {
				prev = old.obs.series
			}
			o.series = newQuerySeries(h.metrics, st.Policy, prev)
		}
	}
	st.obs = o
}

// source is how a query came: its transport and, on the encrypted
// transports, the client's identity (nil on UDP and TCP). The fast path's
// sources also carry the query's addresses, for dnstap: the client's
// (remote) and the server's (local; nil when not known).
type source struct {
	transport string // "udp", "tcp", "dot", "doh" or "doq"
	id        *policy.Identity
	remote    netip.AddrPort
	local     net.Addr
}

// sourceOf returns the source of a query answered through w; udp says
// whether it came over UDP.
func sourceOf(w dns.ResponseWriter, udp bool) source {
	src := source{transport: "tcp"}
	if udp {
		src.transport = "udp"
	}
	if iw, ok := w.(identified); ok {
		src.id = iw.identity()
		if t := iw.transport(); t != "" {
			src.transport = t
		}
	}
	return src
}

// clientID returns the ClientID of the source, or "".
func (s source) clientID() string {
	if s.id == nil {
		return ""
	}
	return s.id.ClientID
}

// cert returns the name the source's verified certificate is logged by:
// its first DNS SAN, else its CN, else its SHA-256 (certNames puts the
// hash first); "" without a certificate.
func (s source) cert() string {
	if s.id == nil {
		return ""
	}
	switch n := s.id.CertNames; len(n) {
	case 0:
		return ""
	case 1:
		return n[0]
	default:
		return n[1]
	}
}

// observe records an answered query in the metrics and the query log. It
// only reads the decision and the reply: observers never steer.
func (h *Handler) observe(st *State, d *policy.Decision, client netip.Addr, src source, q question, rcode int, start time.Time) {
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
		Time:      start,
		Client:    client,
		Transport: src.transport,
		ClientID:  src.clientID(),
		Cert:      src.cert(),
		Action:    d.Action.String(),
		Rcode:     rcode,
		Duration:  took,
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

// SetDnstap makes the handler send every query to the dnstap writer dt
// (nil: no dnstap) and returns the writer it used before, which the caller
// closes. Queries answered by the fast path are sent from their bytes
// (tapWire), the others from their dns.Msg (tapWriter).
func (h *Handler) SetDnstap(dt *dnstap.Writer) *dnstap.Writer {
	return h.dnstap.Swap(dt)
}

// tapWriter is the dns.ResponseWriter of a query while dnstap is on: it
// keeps the reply for the CLIENT_RESPONSE message. The methods of the
// writer it wraps (identified) are read before wrapping (sourceOf).
type tapWriter struct {
	dns.ResponseWriter
	dt  *dnstap.Writer
	msg *dns.Msg // the reply given to WriteMsg; nothing changes it after
	raw []byte   // or a copy of the packed reply given to Write
}

// tapWriter returns w wrapped to keep its reply when dnstap is on, or nil
// (without allocating) when it is off.
func (h *Handler) tapWriter(w dns.ResponseWriter) *tapWriter {
	dt := h.dnstap.Load()
	if dt == nil {
		return nil
	}
	return &tapWriter{ResponseWriter: w, dt: dt}
}

func (w *tapWriter) WriteMsg(m *dns.Msg) error {
	w.msg, w.raw = m, nil
	return w.ResponseWriter.WriteMsg(m)
}

// Write copies b: it is a buffer of the handler's pool.
func (w *tapWriter) Write(b []byte) (int, error) {
	w.msg, w.raw = nil, append([]byte(nil), b...)
	return w.ResponseWriter.Write(b)
}

// send queues the CLIENT_QUERY and CLIENT_RESPONSE messages of req,
// answered as d decided; a nil w (dnstap off) does nothing. req and the
// reply are packed by the dnstap writer: nothing changes them once
// answered.
func (w *tapWriter) send(d *policy.Decision, src source, req *dns.Msg, start time.Time) {
	if w == nil {
		return
	}
	w.dt.Send(&dnstap.Message{
		Kind:         dnstap.Client,
		Transport:    src.transport,
		Client:       addrPort(w.RemoteAddr()),
		Server:       addrPort(w.LocalAddr()),
		QueryTime:    start,
		ResponseTime: time.Now(),
		QueryMsg:     req,
		Response:     w.raw,
		ResponseMsg:  w.msg,
		Decision:     tapDecision(d, src),
	})
}

// tapWire queues the CLIENT_QUERY and CLIENT_RESPONSE messages of a query
// the fast path answered: raw, from src, and its reply, both copied (the
// buffers are the server's), answered as d decided.
func tapWire(dt *dnstap.Writer, d *policy.Decision, src source, raw, reply []byte, start time.Time) {
	dt.Send(&dnstap.Message{
		Kind:         dnstap.Client,
		Transport:    src.transport,
		Client:       netip.AddrPortFrom(src.remote.Addr().Unmap(), src.remote.Port()),
		Server:       addrPort(src.local),
		QueryTime:    start,
		ResponseTime: time.Now(),
		Query:        bytes.Clone(raw),
		Response:     bytes.Clone(reply),
		Decision:     tapDecision(d, src),
	})
}

// tapDecision is d as the dnstap messages' extra field carries it.
func tapDecision(d *policy.Decision, src source) dnstap.Decision {
	td := dnstap.Decision{
		Action:   d.Action.String(),
		App:      d.App(),
		Rule:     d.Match.Rule,
		Via:      d.Via.String(),
		Found:    d.Found,
		ClientID: src.clientID(),
		Cert:     src.cert(),
	}
	if d.Group != nil {
		td.Group = d.Group.Name
	}
	return td
}

// tapForwarder queues the FORWARDER_QUERY and FORWARDER_RESPONSE messages
// of an upstream exchange started at start (resp nil: it failed). Both are
// packed here: the cache shares resp with other queries once it returns.
func tapForwarder(dt *dnstap.Writer, q, resp *dns.Msg, start time.Time) {
	m := dnstap.Message{Kind: dnstap.Forwarder, QueryTime: start, ResponseTime: time.Now()}
	var err error
	if m.Query, err = q.Pack(); err != nil {
		return
	}
	if resp != nil {
		m.Response, _ = resp.Pack()
	}
	dt.Send(&m)
}

// addrPort returns the address and port of a, IPv4-mapped addresses
// unmapped; the zero AddrPort when a has none.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return netip.AddrPort{}
		}
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
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
