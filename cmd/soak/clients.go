package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/synthetic"
)

// outage is a window during which the upstream is stopped. Failures of
// queries that overlap [from, to+grace) are expected.
type outage struct{ from, to time.Time }

// outageGrace is how long after the upstream is back failures are still
// expected: a query asked just before waits for its timeout (500ms), and
// AppFence notices the upstream is back.
const outageGrace = 3 * time.Second

// tally counts what the clients saw.
type tally struct {
	mu       sync.Mutex
	outages  []outage
	answered map[string]int64 // "udp", "tcp"
	rcodes   map[string]int64
	failOut  map[string]int64 // failures outside the outages, by kind
	failIn   map[string]int64 // failures during them
	examples []string         // the first failures outside outages
	info     map[string]int64 // counts that are neither answers nor failures
	asked    map[string]int64 // questions asked, by transport
	correct  map[string]int64 // right answers, by transport
	latency  []time.Duration  // of the right answers
	ban      map[string]int64 // answers to the banned name, by banKind
}

func newTally() *tally {
	return &tally{answered: map[string]int64{}, rcodes: map[string]int64{}, failOut: map[string]int64{},
		failIn: map[string]int64{}, info: map[string]int64{}, asked: map[string]int64{},
		correct: map[string]int64{}, ban: map[string]int64{}}
}

func (t *tally) setOutage(o outage, i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.outages) <= i {
		t.outages = append(t.outages, outage{})
	}
	t.outages[i] = o
}

// inOutage reports whether [from, to] overlaps an outage and its grace.
// An outage that has started and not ended counts as ending now.
func (t *tally) inOutage(from, to time.Time) bool {
	for _, o := range t.outages {
		end := o.to
		if end.IsZero() {
			end = time.Now()
		}
		if !o.from.IsZero() && from.Before(end.Add(outageGrace)) && to.After(o.from) {
			return true
		}
	}
	return false
}

func (t *tally) answer(netw string, rcode int) {
	t.mu.Lock()
	t.answered[netw]++
	t.rcodes[dns.RcodeToString[rcode]]++
	t.mu.Unlock()
}

// ask counts a question asked over netw.
func (t *tally) ask(netw string) {
	t.mu.Lock()
	t.asked[netw]++
	t.mu.Unlock()
}

// result records resp, the answer over netw to q asked at sent by a client
// of group exempt: counted, checked, its latency kept when it is right,
// and, for the banned name, how the ban fared.
func (t *tally) result(netw string, q question, exempt bool, resp *dns.Msg, sent time.Time) {
	took := time.Since(sent)
	bad := check(q, exempt, resp)
	t.mu.Lock()
	t.answered[netw]++
	t.rcodes[dns.RcodeToString[resp.Rcode]]++
	if bad == "" {
		t.correct[netw]++
		t.latency = append(t.latency, took)
	}
	if strings.EqualFold(q.name, bannedName) {
		t.ban[banKind(exempt, resp)]++
	}
	t.mu.Unlock()
	if bad != "" {
		t.fail(bad, sent, fmt.Sprintf("%s %s %s: %s", netw, q.name, dns.TypeToString[q.qtype], dns.RcodeToString[resp.Rcode]))
	}
}

// bannedName is the name of the banned app (tiktok) the clients ask.
const bannedName = "www.tiktok.com."

// banKind classifies an answer to the banned name: "default blocked" and
// "exempt resolved" are the ban working, "default resolved" (fail-open)
// and "exempt blocked" (a false block) are the ban broken, and a SERVFAIL
// is neither.
func banKind(exempt bool, resp *dns.Msg) string {
	who := map[bool]string{false: "default", true: "exempt"}[exempt]
	switch {
	case resp.Rcode == dns.RcodeServerFailure:
		return who + " servfail"
	case resp.Rcode == dns.RcodeNameError && len(resp.Answer) == 0:
		return who + " blocked"
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		return who + " resolved"
	}
	return who + " " + dns.RcodeToString[resp.Rcode]
}

// fail records a failure of a query sent at sent and finished now.
func (t *tally) fail(kind string, sent time.Time, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inOutage(sent, time.Now()) {
		t.failIn[kind]++
		return
	}
	t.failOut[kind]++
	if len(t.examples) < 10 {
		t.examples = append(t.examples, fmt.Sprintf("%s at %s: %s", kind, sent.Format("15:04:05.000"), detail))
	}
}

func (t *tally) note(kind string, n int64) {
	t.mu.Lock()
	t.info[kind] += n
	t.mu.Unlock()
}

func (t *tally) get(m map[string]int64, k string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return m[k]
}

// format lists a map's counts, largest first.
func format(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	var total int64
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	if total == 0 {
		return "none"
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// question is one query of the ordinary load and what its answer must be.
type question struct {
	name  string
	qtype uint16
}

// pick returns a query: mostly names of a pool larger than the cache, some
// blocked, some that do not exist, in mixed letter case.
func pick(r *rand.Rand) question {
	q := question{qtype: dns.TypeA}
	if r.IntN(10) == 0 {
		q.qtype = dns.TypeAAAA
	}
	switch n := r.IntN(100); {
	case n < 5:
		q.name = bannedName
	case n < 10:
		q.name = fmt.Sprintf("nx%d.soak.test.", r.IntN(1000))
	default:
		q.name = fmt.Sprintf("n%d.soak.test.", r.IntN(20000))
	}
	if r.IntN(4) == 0 {
		q.name = strings.ToUpper(q.name)
	}
	return q
}

// check returns what is wrong with resp as the answer to q from a client
// of group exempt (true: investigators), or "" when it is right. SERVFAIL
// is "servfail": expected during outages only.
func check(q question, exempt bool, resp *dns.Msg) string {
	if resp.Rcode == dns.RcodeServerFailure {
		return "servfail"
	}
	name := strings.ToLower(q.name)
	switch {
	case name == bannedName && !exempt:
		if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
			return "block-wrong"
		}
		return ""
	case strings.HasPrefix(name, "nx"):
		if resp.Rcode != dns.RcodeNameError {
			return "rcode-wrong"
		}
		return ""
	}
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		return "answer-wrong"
	}
	rr := resp.Answer[0]
	if rr.Header().Name != q.name {
		return "case-wrong"
	}
	want := synthetic.AddrOf(q.name, q.qtype == dns.TypeAAAA).String()
	switch rr := rr.(type) {
	case *dns.A:
		if rr.A.String() == want {
			return ""
		}
	case *dns.AAAA:
		if rr.AAAA.String() == want {
			return ""
		}
	}
	return "answer-wrong"
}

// udpClient asks questions from local at qps, one at a time, and checks
// each answer.
func udpClient(ctx context.Context, t *tally, server, local string, exempt bool, qps int) {
	c, err := dialFrom("udp", local, server)
	if err != nil {
		t.fail("dial", time.Now(), err.Error())
		return
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(rand.Uint64(), 0))
	buf := make([]byte, 65535)
	pace(ctx, qps, func() {
		q := pick(r)
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, false)
		out, _ := m.Pack()
		sent := time.Now()
		t.ask("udp")
		if _, err := c.Write(out); err != nil {
			t.fail("send", sent, err.Error())
			return
		}
		c.SetReadDeadline(sent.Add(2 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.fail("timeout", sent, q.name)
				return
			}
			resp := new(dns.Msg)
			if resp.Unpack(buf[:n]) != nil || resp.Id != m.Id {
				continue // a late reply to an earlier query
			}
			t.result("udp", q, exempt, resp, sent)
			return
		}
	})
}

// tcpClient asks questions from local, a client of group exempt, over one
// TCP connection at a time, opening a new one when the server closes it
// (after 128 queries), and checks each answer.
func tcpClient(ctx context.Context, t *tally, server, local string, exempt bool, qps int) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	var co *dns.Conn
	defer func() {
		if co != nil {
			co.Close()
		}
	}()
	pace(ctx, qps, func() {
		q := pick(r)
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		sent := time.Now()
		t.ask("tcp")
		for attempt := 0; ; attempt++ {
			if co == nil {
				c, err := dialFrom("tcp", local, server)
				if err != nil {
					t.fail("tcp-connect", sent, err.Error())
					return
				}
				co = &dns.Conn{Conn: c}
				t.note("tcp connections", 1)
			}
			co.SetDeadline(time.Now().Add(2 * time.Second))
			err := co.WriteMsg(m)
			var resp *dns.Msg
			if err == nil {
				resp, err = co.ReadMsg()
			}
			if err != nil {
				co.Close()
				co = nil
				if attempt == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
					continue // closed after its last query, or idle: ask on a new one
				}
				t.fail("tcp-error", sent, err.Error())
				return
			}
			t.result("tcp", q, exempt, resp, sent)
			return
		}
	})
}

// refusedClient asks from outside allow_clients: every answer is REFUSED.
func refusedClient(ctx context.Context, t *tally, server string, qps int) {
	c, err := dialFrom("udp", clientRefused, server)
	if err != nil {
		t.fail("dial", time.Now(), err.Error())
		return
	}
	defer c.Close()
	pace(ctx, qps, func() {
		m := new(dns.Msg)
		m.SetQuestion("n1.soak.test.", dns.TypeA)
		sent := time.Now()
		resp, err := exchange(c, m, 2*time.Second)
		switch {
		case err != nil:
			t.fail("timeout", sent, "refused client: "+err.Error())
		case resp.Rcode != dns.RcodeRefused:
			t.fail("not-refused", sent, dns.RcodeToString[resp.Rcode])
		default:
			t.answer("udp", resp.Rcode)
		}
	})
}

// exchange sends m on c and reads the reply with its ID.
func exchange(c net.Conn, m *dns.Msg, wait time.Duration) (*dns.Msg, error) {
	out, err := m.Pack()
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		resp := new(dns.Msg)
		if resp.Unpack(buf[:n]) == nil && resp.Id == m.Id {
			return resp, nil
		}
	}
}

// malformedClient sends packets that must never be answered (IDs 0x8000
// and up) mixed with parseable bad queries that must get FORMERR or
// NOTIMP (IDs below). A reader counts the replies.
func malformedClient(ctx context.Context, t *tally, server string, pps int) {
	c, err := dialFrom("udp", clientMalformed, server)
	if err != nil {
		t.fail("dial", time.Now(), err.Error())
		return
	}
	defer c.Close()
	var errorsWanted atomic.Int64
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			resp := new(dns.Msg)
			if n < 12 || resp.Unpack(buf[:n]) != nil {
				t.fail("bad-reply", time.Now(), fmt.Sprintf("%x", buf[:n]))
				continue
			}
			switch {
			case resp.Id >= 0x8000:
				t.fail("answered-malformed", time.Now(), fmt.Sprintf("ID %#x", resp.Id))
			case resp.Rcode == dns.RcodeFormatError || resp.Rcode == dns.RcodeNotImplemented:
				t.note("malformed: FORMERR/NOTIMP answered", 1)
			default:
				t.fail("wrong-error", time.Now(), dns.RcodeToString[resp.Rcode])
			}
		}
	}()
	r := rand.New(rand.NewPCG(rand.Uint64(), 2))
	base := new(dns.Msg)
	base.SetQuestion("n1.soak.test.", dns.TypeA)
	query, _ := base.Pack()
	i := 0
	pace(ctx, pps, func() {
		i++
		var p []byte
		switch i % 8 {
		case 0: // random bytes, QR set (without it they may parse as a query)
			p = make([]byte, 1+r.IntN(600))
			for j := range p {
				p[j] = byte(r.Uint32())
			}
			if len(p) > 2 {
				p[2] |= 0x80
			}
		case 1: // a response
			p = append([]byte(nil), query...)
			p[2] |= 0x80
		case 2: // compressed question
			p = append(append([]byte(nil), query[:12]...), 0xC0, 0x00, 0, 1, 0, 1)
		case 3: // cut inside the question (a header alone is a query without one: FORMERR)
			p = append([]byte(nil), query[:13+r.IntN(len(query)-13)]...)
		case 4: // a runt
			p = append([]byte(nil), query[:r.IntN(12)]...)
		case 5: // two questions: FORMERR
			m := base.Copy()
			m.Id = uint16(r.IntN(0x8000))
			m.Question = append(m.Question, m.Question[0])
			p, _ = m.Pack()
		case 6: // NOTIFY: NOTIMP
			m := base.Copy()
			m.Id = uint16(r.IntN(0x8000))
			m.Opcode = dns.OpcodeNotify
			p, _ = m.Pack()
		case 7: // a query with a label type that is reserved
			p = append(append([]byte(nil), query[:12]...), 0x40, 'x', 0, 0, 1, 0, 1)
		}
		if i%8 == 5 || i%8 == 6 {
			errorsWanted.Add(1)
		} else if len(p) >= 2 {
			binary.BigEndian.PutUint16(p, 0x8000|uint16(r.Uint32()))
		}
		c.Write(p)
		t.note("malformed: sent", 1)
	})
	time.Sleep(time.Second) // the last replies
	t.note("malformed: FORMERR/NOTIMP wanted", errorsWanted.Load())
}

// garbageTCP opens a TCP connection now and then and sends garbage: the
// server must close it without a reply.
func garbageTCP(ctx context.Context, t *tally, server string, every time.Duration) {
	tick(ctx, every, func() {
		sent := time.Now()
		c, err := dialFrom("tcp", clientMalformed, server)
		if err != nil {
			t.fail("tcp-connect", sent, err.Error())
			return
		}
		defer c.Close()
		c.Write([]byte{0, 5, 1, 2, 3, 4, 5})
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(make([]byte, 512))
		switch {
		case n > 0:
			t.fail("answered-malformed", sent, "tcp garbage answered")
		case isTimeout(err):
			t.fail("garbage-conn-open", sent, "tcp connection with garbage not closed")
		default:
			t.note("tcp garbage connections closed", 1)
		}
	})
}

// slowClients open a TCP connection now and then, send half a query and
// stall: the server must close it after tcp_idle_timeout.
func slowClients(ctx context.Context, t *tally, server string, every time.Duration) {
	tick(ctx, every, func() {
		sent := time.Now()
		c, err := dialFrom("tcp", clientSlow, server)
		if err != nil {
			t.fail("tcp-connect", sent, err.Error())
			return
		}
		defer c.Close()
		c.Write([]byte{0, 40, 0x12, 0x34, 0x01})
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout + 2*time.Second))
		_, err = c.Read(make([]byte, 512))
		if isTimeout(err) {
			t.fail("slow-client-kept", sent, "a stalled TCP client was not cut off")
			return
		}
		t.note("slow TCP clients cut off", 1)
	})
}

// flood sends queries as fast as pps allows from one address without
// waiting for answers, and counts the answers: rate_limit must hold.
func flood(ctx context.Context, t *tally, server string, pps int, answered *atomic.Int64) {
	c, err := dialFrom("udp", clientFlood, server)
	if err != nil {
		t.fail("dial", time.Now(), err.Error())
		return
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	m := new(dns.Msg)
	m.SetQuestion("n7.soak.test.", dns.TypeA)
	out, _ := m.Pack()
	pace(ctx, pps, func() {
		c.Write(out)
		t.note("flood: sent", 1)
	})
	time.Sleep(500 * time.Millisecond)
}

// pace calls f qps times a second until ctx is done (in bursts of 10ms).
func pace(ctx context.Context, qps int, f func()) {
	const slot = 10 * time.Millisecond
	per := float64(qps) * slot.Seconds()
	tk := time.NewTicker(slot)
	defer tk.Stop()
	due := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		due += per
		for ; due >= 1; due-- {
			if ctx.Err() != nil {
				return
			}
			f()
		}
	}
}

// tick calls f every interval until ctx is done.
func tick(ctx context.Context, every time.Duration, f func()) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			f()
		}
	}
}

func dialFrom(netw, local, server string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	ip := net.ParseIP(local)
	if netw == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	} else {
		d.LocalAddr = &net.UDPAddr{IP: ip}
	}
	return d.Dial(netw, server)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
