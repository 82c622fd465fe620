package upstream

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// errConnLost is the error of a query whose TCP or TLS connection closed or
// broke before its answer arrived. Such a query is sent again, up to
// maxResend times: servers close connections when they like (RFC 7766
// 6.2.3), and a server that closes after a few queries may drop several
// pipelined ones at once.
var errConnLost = errors.New("connection lost")

// maxResend bounds how often a query is sent again after losing its
// connection.
const maxResend = 2

// errIdle ends connections closed because no query used them.
var errIdle = errors.New("connection closed while idle")

// streamPool keeps the TCP or TLS connections to one server and pipelines
// queries over them (RFC 7766 6.2.1.1): a query goes on an idle connection
// when there is one, else on a new connection while there are fewer than
// maxConns, else on the least busy one, behind the queries already in
// flight. Answers are matched to queries by message ID, so they may arrive
// in any order.
type streamPool struct {
	dial     func(context.Context) (net.Conn, error)
	idle     time.Duration
	maxConns int

	mu      sync.Mutex
	conns   []*streamConn
	dialing int           // dials in progress
	dialed  chan struct{} // closed when a dial in progress ends
}

func newStreamPool(dial func(context.Context) (net.Conn, error), st *settings) *streamPool {
	return &streamPool{dial: dial, idle: st.streamIdle, maxConns: max(1, st.streamConns)}
}

// exchange sends req on a pooled connection and waits for its answer. A
// query whose connection is lost before the answer is sent again on
// another connection, up to maxResend times.
func (p *streamPool) exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	for sent := 0; ; sent++ {
		c, err := p.get(ctx)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		resp, err := c.exchange(ctx, req)
		if err == nil {
			resp.Id = req.Id
			return resp, nil
		}
		if sent == maxResend || ctx.Err() != nil || !errors.Is(err, errConnLost) {
			return nil, err
		}
	}
}

// get returns a connection for one more query, dialling when needed.
func (p *streamPool) get(ctx context.Context) (*streamConn, error) {
	for {
		p.mu.Lock()
		var best *streamConn
		bestLoad, usable := 0, 0
		for _, c := range p.conns {
			n, ok := c.load()
			if !ok {
				continue // draining: its queries finish, it takes no more
			}
			usable++
			if best == nil || n < bestLoad {
				best, bestLoad = c, n
			}
		}
		full := usable+p.dialing >= p.maxConns
		if best != nil && (bestLoad == 0 || full) {
			p.mu.Unlock()
			return best, nil
		}
		if best == nil && full {
			// Every allowed connection is being dialled (p.dialing > 0):
			// wait for one.
			dialed := p.dialed
			p.mu.Unlock()
			select {
			case <-dialed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		p.dialing++
		if p.dialed == nil {
			p.dialed = make(chan struct{})
		}
		p.mu.Unlock()
		return p.dialConn(ctx, best)
	}
}

// dialConn dials a new connection; when that fails, busy (if not nil and
// still usable) is used instead.
func (p *streamPool) dialConn(ctx context.Context, busy *streamConn) (*streamConn, error) {
	nc, err := p.dial(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing--
	if p.dialed != nil { // wake the queries waiting for a connection
		close(p.dialed)
		p.dialed = nil
	}
	if err != nil {
		if busy != nil {
			if _, ok := busy.load(); ok {
				return busy, nil // pipeline behind its queries instead
			}
		}
		return nil, err
	}
	c := &streamConn{conn: nc, pool: p, pending: map[uint16]chan []byte{}, done: make(chan struct{})}
	nc.SetReadDeadline(time.Now().Add(p.idle))
	go c.read()
	p.conns = append(p.conns, c)
	return c, nil
}

// remove forgets a connection that has ended.
func (p *streamPool) remove(c *streamConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, o := range p.conns {
		if o == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

// closeIdle closes the connections without a query in flight and waits for
// their readers to stop; busy connections take no new queries and close
// after their last answer.
func (p *streamPool) closeIdle() {
	p.mu.Lock()
	conns := append([]*streamConn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		if c.drain() {
			<-c.done
		}
	}
}

// streamConn is one TCP or TLS connection with the queries in flight on it.
type streamConn struct {
	conn net.Conn
	pool *streamPool
	wmu  sync.Mutex // one message written at a time

	mu       sync.Mutex
	pending  map[uint16]chan []byte // message ID -> where its answer goes
	err      error                  // why the connection ended
	draining bool                   // no new queries; close after the last answer
	done     chan struct{}          // closed when the reader has stopped
}

// load returns the number of queries in flight and whether the connection
// takes new ones.
func (c *streamConn) load() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending), c.err == nil && !c.draining
}

// exchange sends req with an ID unique on this connection and waits for the
// answer.
func (c *streamConn) exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil || c.draining {
		c.mu.Unlock()
		return nil, errConnLost
	}
	id := dns.Id()
	for c.pending[id] != nil {
		id = dns.Id()
	}
	c.pending[id] = ch
	c.mu.Unlock()

	buf, err := pack(req, id)
	if err != nil {
		c.forget(id)
		return nil, err
	}
	if err := c.write(ctx, buf); err != nil {
		// A message may be half written: the connection is unusable.
		c.fail(err)
		return nil, ctxErr(ctx, fmt.Errorf("%w: %w", errConnLost, err))
	}
	var msg []byte
	select {
	case msg = <-ch:
	case <-c.done:
		select {
		case msg = <-ch:
		default:
			return nil, fmt.Errorf("%w: %w", errConnLost, c.cause())
		}
	case <-ctx.Done():
		c.forget(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// No answer in time: the connection may be dead (a NAT
			// forgot it, the server hangs). Use a new one from now on.
			c.drain()
		}
		return nil, ctx.Err()
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(msg); err != nil {
		return nil, fmt.Errorf("unpack answer: %w", err)
	}
	return resp, nil
}

// write sends one framed message; it also pushes back the idle deadline.
func (c *streamConn) write(ctx context.Context, buf []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	now := time.Now()
	c.conn.SetReadDeadline(now.Add(c.pool.idle))
	deadline := now.Add(c.pool.idle)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetWriteDeadline(deadline)
	_, err := c.conn.Write(buf)
	return err
}

// read receives answers and hands each to its query until the connection
// ends: closed by the server, broken, or idle past the deadline that every
// write and read pushes back.
func (c *streamConn) read() {
	defer close(c.done)
	r := bufio.NewReader(c.conn)
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.fail(err)
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n < 12 {
			c.fail(fmt.Errorf("answer of %d bytes is shorter than a DNS header", n))
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			c.fail(err)
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(c.pool.idle))
		c.deliver(binary.BigEndian.Uint16(msg), msg)
	}
}

// deliver hands an answer to the query with its ID; an answer nobody waits
// for (its query gave up) is dropped.
func (c *streamConn) deliver(id uint16, msg []byte) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	last := c.draining && len(c.pending) == 0
	c.mu.Unlock()
	if ch != nil {
		ch <- msg
	}
	if last {
		c.fail(errIdle)
	}
}

// forget removes a query that gave up.
func (c *streamConn) forget(id uint16) {
	c.mu.Lock()
	delete(c.pending, id)
	last := c.draining && len(c.pending) == 0
	c.mu.Unlock()
	if last {
		c.fail(errIdle)
	}
}

// drain stops new queries on the connection and closes it once no query is
// in flight. It reports whether the connection is closed now.
func (c *streamConn) drain() bool {
	c.mu.Lock()
	c.draining = true
	idle := len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		c.fail(errIdle)
	}
	return idle
}

// fail ends the connection: its queries in flight get errConnLost.
func (c *streamConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.pool.remove(c)
	c.conn.Close()
}

func (c *streamConn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
