package resolver

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestKdigEncrypted asks the DoT and DoH listeners with Knot's kdig, an
// independent client: +tls with a ClientID in SNI and with a client
// certificate, +https POST and GET with a ClientID in the path.
func TestKdigEncrypted(t *testing.T) {
	kdig, err := exec.LookPath("kdig")
	if err != nil {
		t.Fatal("kdig is not installed: run `make test-deps` (installs Debian's knot-dnsutils)")
	}
	e := startTLSEnv(t)
	phone := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))
	certFile, keyFile := dnstest.WritePair(t, t.TempDir(), phone)
	ca := e.ca.WriteFile(t)
	dot, _, _ := net.SplitHostPort(e.tls.DoTAddrs()[0].String())
	_, dotPort, _ := net.SplitHostPort(e.tls.DoTAddrs()[0].String())
	_, dohPort, _ := net.SplitHostPort(e.tls.DoHAddrs()[0].String())
	_, doqPort, _ := net.SplitHostPort(e.tls.DoQAddrs()[0].String())
	tlsArgs := []string{"+tls-ca=" + ca, "+tls-hostname=dns.test"}
	tests := []struct {
		name         string
		args         []string
		wantResolved bool
	}{
		{"tls", append([]string{"-p", dotPort, "+tls"}, tlsArgs...), false},
		{"tls ClientID in SNI", append([]string{"-p", dotPort, "+tls-sni=officer-017.dns.test"}, tlsArgs...), true},
		{"tls unknown ClientID", append([]string{"-p", dotPort, "+tls-sni=officer-999.dns.test"}, tlsArgs...), false},
		{"tls client certificate", append([]string{"-p", dotPort, "+tls-certfile=" + certFile, "+tls-keyfile=" + keyFile}, tlsArgs...), true},
		{"https POST", append([]string{"-p", dohPort, "+https"}, tlsArgs...), false},
		{"https GET ClientID in path", append([]string{"-p", dohPort, "+https=/dns-query/officer-017", "+https-get"}, tlsArgs...), true},
		{"https POST ClientID in path", append([]string{"-p", dohPort, "+https=/dns-query/officer-017"}, tlsArgs...), true},
		// +quic after the +tls options, which would select DoT.
		{"quic", append([]string{"-p", doqPort}, append(tlsArgs, "+quic")...), false},
		{"quic ClientID in SNI", append([]string{"-p", doqPort}, append(tlsArgs, "+tls-sni=officer-017.dns.test", "+quic")...), true},
		{"quic client certificate", append([]string{"-p", doqPort}, append(tlsArgs, "+tls-certfile="+certFile, "+tls-keyfile="+keyFile, "+quic")...), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"@" + dot, "+timeout=3", "+retry=0"}, tt.args...)
			args = append(args, "www.tiktok.com", "A")
			out, err := exec.Command(kdig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("kdig %v: %v\n%s", args, err, out)
			}
			s := string(out)
			resolved := strings.Contains(s, "status: NOERROR") && strings.Contains(s, "192.0.2.10")
			blocked := strings.Contains(s, "status: NXDOMAIN")
			if tt.wantResolved && !resolved || !tt.wantResolved && !blocked {
				t.Errorf("kdig %v: want resolved=%v:\n%s", args, tt.wantResolved, s)
			}
		})
	}
}

func TestDigDDR(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: run `make test-deps` (installs Debian's bind9-dnsutils)")
	}
	e := startTLSEnv(t)
	host, port, _ := net.SplitHostPort(e.addr)
	args := []string{"@" + host, "-p", port, "+timeout=3", "+tries=1", "_dns.resolver.arpa", "SVCB"}
	out, err := exec.Command(dig, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	s := string(out)
	_, dotPort, _ := net.SplitHostPort(e.tls.DoTAddrs()[0].String())
	_, dohPort, _ := net.SplitHostPort(e.tls.DoHAddrs()[0].String())
	_, doqPort, _ := net.SplitHostPort(e.tls.DoQAddrs()[0].String())
	for _, want := range []string{
		"status: NOERROR",
		`1 dns.test. alpn="dot" port=` + dotPort + " ipv4hint=127.0.0.1",
		`2 dns.test. alpn="h2" port=` + dohPort + ` ipv4hint=127.0.0.1 key7="/dns-query{?dns}"`,
		`3 dns.test. alpn="doq" port=` + doqPort + " ipv4hint=127.0.0.1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("dig %v: no %q in\n%s", args, want, s)
		}
	}
	// Other names under resolver.arpa stay NODATA, and none goes upstream.
	args = []string{"@" + host, "-p", port, "+timeout=3", "+tries=1", "_dns.resolver.arpa", "A"}
	out, err = exec.Command(dig, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	if s := string(out); !strings.Contains(s, "status: NOERROR") || !strings.Contains(s, "ANSWER: 0") {
		t.Errorf("dig %v: want NODATA:\n%s", args, s)
	}
	if n := e.upstream.Asked("_dns.resolver.arpa."); n != 0 {
		t.Errorf("upstream asked %d times for _dns.resolver.arpa", n)
	}
}
