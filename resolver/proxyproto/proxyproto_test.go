package proxyproto

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	v4 := Append(nil, netip.MustParseAddrPort("192.0.2.7:5353"), netip.MustParseAddrPort("198.51.100.1:853"))
	v6 := Append(nil, netip.MustParseAddrPort("[2001:db8::7]:5353"), netip.MustParseAddrPort("[2001:db8::1]:443"))
	local := append([]byte(signature), 0x20, 0x00, 0, 0)
	withTLV := append([]byte(signature), 0x21, famTCP4, 0, 15)
	withTLV = append(withTLV, v4[16:]...)
	withTLV = append(withTLV, 0x04, 0, 0) // a NOOP TLV
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantErr bool
	}{
		{name: "tcp4", in: v4, want: Header{Source: netip.MustParseAddrPort("192.0.2.7:5353"), Destination: netip.MustParseAddrPort("198.51.100.1:853")}},
		{name: "tcp6", in: v6, want: Header{Source: netip.MustParseAddrPort("[2001:db8::7]:5353"), Destination: netip.MustParseAddrPort("[2001:db8::1]:443")}},
		{name: "local", in: local, want: Header{Local: true}},
		{name: "TLVs skipped", in: withTLV, want: Header{Source: netip.MustParseAddrPort("192.0.2.7:5353"), Destination: netip.MustParseAddrPort("198.51.100.1:853")}},
		{name: "TLS instead", in: []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh"), wantErr: true},
		{name: "version 1 text", in: []byte("PROXY TCP4 192.0.2.7 198.51.100.1 5353 853\r\n"), wantErr: true},
		{name: "short", in: v4[:20], wantErr: true},
		{name: "udp family", in: append(append([]byte(signature), 0x21, 0x12, 0, 12), v4[16:]...), wantErr: true},
		{name: "unknown command", in: append(append([]byte(signature), 0x2F, famTCP4, 0, 12), v4[16:]...), wantErr: true},
		{name: "too long", in: append([]byte(signature), 0x21, famTCP4, 0xFF, 0xFF), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(append(tt.in, "rest"...))
			got, err := Read(r)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Read = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Read = %+v, want %+v", got, tt.want)
			}
			if rest := r.Len(); rest != 4 {
				t.Errorf("%d bytes left after the header, want the 4 that follow it", rest)
			}
		})
	}
}

func TestConnOnLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(Append(nil, netip.MustParseAddrPort("192.0.2.7:5353"), netip.MustParseAddrPort("127.0.0.1:853")))
		c.Write([]byte("query"))
		c.Read(make([]byte, 1)) // until the server closes
	}()
	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := NewConn(raw, 2*time.Second)
	if got := c.RemoteAddr().String(); got != "192.0.2.7:5353" {
		t.Errorf("RemoteAddr %s, want the header's 192.0.2.7:5353", got)
	}
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "query" {
		t.Errorf("Read %q, %v: want the data after the header", buf, err)
	}

	// A balancer that sends nothing is cut off by the timeout.
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.Read(make([]byte, 1))
	}()
	raw2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	c2 := NewConn(raw2, 50*time.Millisecond)
	var ne net.Error
	if err := c2.Err(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Err = %v, want a timeout", err)
	}
	if got := c2.RemoteAddr().String(); got != raw2.RemoteAddr().String() {
		t.Errorf("RemoteAddr %s after a failed header, want the connection's own %s", got, raw2.RemoteAddr())
	}
}

func TestTrusted(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for a, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "2001:db8::1": true, "192.0.2.1": false} {
		if got := Trusted(p, netip.MustParseAddr(a)); got != want {
			t.Errorf("Trusted(%s) = %v, want %v", a, got, want)
		}
	}
}
