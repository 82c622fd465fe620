// Package proxyproto reads the header of the PROXY protocol version 2
// (HAProxy, "The PROXY protocol", section 2.2) that a load balancer or TLS
// terminator sends in front of a TCP connection, so that the resolver
// knows the client's address rather than the balancer's.
//
// Only connections from trusted sources are read for a header, and from
// them it is required: a source that is not trusted cannot choose the
// address its queries are judged by.
//
// It imports no AppFence package.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// signature opens every version 2 header.
const signature = "\r\n\r\n\x00\r\nQUIT\n"

// maxLength bounds the address block and TLVs of a header.
const maxLength = 1024

// Commands and address families of the header.
const (
	cmdLocal = 0x0
	cmdProxy = 0x1
	famTCP4  = 0x11
	famTCP6  = 0x21
)

// ErrNoHeader is a connection from a trusted source that does not start
// with a version 2 header.
var ErrNoHeader = errors.New("proxy protocol: no v2 header")

// Header is a parsed version 2 header.
type Header struct {
	// Local is a LOCAL command (a health check of the balancer itself):
	// the connection's own addresses stand.
	Local bool
	// Source and Destination are the client's address and the address it
	// connected to, for a PROXY command over TCP.
	Source, Destination netip.AddrPort
}

// Read reads one version 2 header from r, and nothing after it.
func Read(r io.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{}, fmt.Errorf("proxy protocol header: %w", err)
	}
	if !bytes.Equal(fixed[:12], []byte(signature)) {
		return Header{}, ErrNoHeader
	}
	if v := fixed[12] >> 4; v != 2 {
		return Header{}, fmt.Errorf("proxy protocol: version %d, want 2", v)
	}
	cmd, fam := fixed[12]&0xF, fixed[13]
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	if n > maxLength {
		return Header{}, fmt.Errorf("proxy protocol: header of %d bytes, more than %d", n, maxLength)
	}
	rest := make([]byte, n)
	if _, err := io.ReadFull(r, rest); err != nil {
		return Header{}, fmt.Errorf("proxy protocol addresses: %w", err)
	}
	switch cmd {
	case cmdLocal:
		return Header{Local: true}, nil
	case cmdProxy:
	default:
		return Header{}, fmt.Errorf("proxy protocol: unknown command %#x", cmd)
	}
	var h Header
	switch fam {
	case famTCP4:
		if n < 12 {
			return Header{}, fmt.Errorf("proxy protocol: TCP over IPv4 in %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(rest[0:4])), binary.BigEndian.Uint16(rest[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(rest[4:8])), binary.BigEndian.Uint16(rest[10:]))
	case famTCP6:
		if n < 36 {
			return Header{}, fmt.Errorf("proxy protocol: TCP over IPv6 in %d bytes", n)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(rest[0:16])).Unmap(), binary.BigEndian.Uint16(rest[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(rest[16:32])).Unmap(), binary.BigEndian.Uint16(rest[34:]))
	default:
		return Header{}, fmt.Errorf("proxy protocol: address family %#x is not TCP", fam)
	}
	return h, nil
}

// Append appends the version 2 header of a PROXY command from src to dst
// (both IPv4 or both IPv6) to b: what a balancer sends.
func Append(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, signature...)
	b = append(b, 0x20|cmdProxy)
	if src.Addr().Is4() {
		b = append(b, famTCP4, 0, 12)
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, famTCP6, 0, 36)
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// Trusted reports whether a is in one of prefixes.
func Trusted(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Conn is a connection from a trusted balancer. Its header is read, within
// a timeout, on the first Read or RemoteAddr, so that a slow balancer
// holds only the goroutine of its own connection, never an accept loop.
// RemoteAddr is then the client's address of the header. A missing or
// malformed header fails every Read.
type Conn struct {
	net.Conn
	timeout time.Duration

	once sync.Once
	hdr  Header
	err  error
}

// NewConn returns c, whose header must come within timeout.
func NewConn(c net.Conn, timeout time.Duration) *Conn {
	return &Conn{Conn: c, timeout: timeout}
}

func (c *Conn) init() {
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.hdr, c.err = Read(c.Conn)
		c.Conn.SetReadDeadline(time.Time{})
	})
}

// Err returns the error of reading the header, nil once it is read.
func (c *Conn) Err() error {
	c.init()
	return c.err
}

// Read reads the data after the header.
func (c *Conn) Read(b []byte) (int, error) {
	if c.init(); c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}

// RemoteAddr returns the client's address of the header, or the
// connection's own for a LOCAL header or a failed one.
func (c *Conn) RemoteAddr() net.Addr {
	if c.init(); c.err != nil || c.hdr.Local {
		return c.Conn.RemoteAddr()
	}
	return net.TCPAddrFromAddrPort(c.hdr.Source)
}
