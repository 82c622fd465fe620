package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

func TestDefault(t *testing.T) {
	cfg := Default()
	if cfg.File != BuiltinName {
		t.Errorf("File = %q", cfg.File)
	}
	if got := cfg.Server.Listen; len(got) != 2 || got[0] != "127.0.0.1:5053" || got[1] != "[::1]:5053" {
		t.Errorf("listen = %v", got)
	}
	if len(cfg.Server.AllowClients) != 8 {
		t.Errorf("allow_clients = %v", cfg.Server.AllowClients)
	}
	if cfg.Server.MaxTCPQueriesPerConnection != 0 {
		t.Errorf("max_tcp_queries_per_connection = %d, want 0 (no bound)", cfg.Server.MaxTCPQueriesPerConnection)
	}
	if cfg.Upstream.Timeout != 2*time.Second || cfg.Upstream.Strategy != "failover" {
		t.Errorf("upstream = %+v", cfg.Upstream)
	}
	if s := cfg.Upstream.Servers; len(s) != 2 || s[0].Addr != "9.9.9.9:53" || s[0].Proto != ProtoDNS {
		t.Errorf("servers = %+v", s)
	}
	if cfg.Cache.Size != 100000 || cfg.Cache.MaxTTL != 24*time.Hour || cfg.Cache.MaxNegativeTTL != time.Hour || !cfg.Cache.Prefetch {
		t.Errorf("cache = %+v", cfg.Cache)
	}
	b := cfg.Blocking
	if b.Response != "nxdomain" || b.TTL != time.Minute || !b.ExtendedErrors || !b.InspectCNAMEs || !b.Watch {
		t.Errorf("blocking = %+v", b)
	}
	if len(b.Block) != 1 || b.Block[0].Name != "tiktok" {
		t.Errorf("blocking.block = %+v", b.Block)
	}
	wd, _ := os.Getwd()
	if len(b.Lists) != 1 || b.Lists[0] != filepath.Join(wd, "blocklists/*.toml") {
		t.Errorf("lists = %v", b.Lists)
	}
	if len(cfg.Groups) != 0 || len(cfg.Upstream.Forward) != 0 {
		t.Errorf("groups %v, forward %v: the built-in config has none", cfg.Groups, cfg.Upstream.Forward)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9153" || cfg.Log.Level != "info" || cfg.Log.QueryLogScope != "blocked" {
		t.Errorf("metrics %+v log %+v", cfg.Metrics, cfg.Log)
	}
}

const full = `
[server]
listen = ["127.0.0.1:53"]
allow_clients = ["10.0.0.0/8", "192.0.2.7"]
rate_limit = 50

[upstream]
servers = ["192.0.2.53", "tls://192.0.2.1#dns.example", "https://dns.example/dns-query"]
strategy = "parallel"
timeout = "500ms"

[[upstream.forward]]
zones = ["Corp.Example."]
servers = ["10.0.0.53:5300"]

[cache]
size = 10
serve_stale = "1h"

[blocking]
response = "sinkhole"
sinkhole_ipv4 = "192.0.2.99"
lists = ["lists/*.toml"]
block = ["tiktok", "encrypted-dns"]

[[group]]
name = "investigators"
clients = ["10.20.30.0/24", "10.20.31.17", "fd00:20:30::/64"]
allow = ["tiktok"]

[[group]]
name = "default"
block = ["facebook"]

[log]
query_log = "q.log"
dnstap = "tcp:127.0.0.1:6000"
dnstap_identity = "resolver-1"
`

func TestParseFull(t *testing.T) {
	cfg, err := Parse("/etc/appfence/appfence.toml", []byte(full), "/etc/appfence")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.RateLimit != 50 || cfg.Server.AllowClients[1] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("server = %+v", cfg.Server)
	}
	want := []UpstreamServer{
		{Raw: "192.0.2.53", Proto: ProtoDNS, Addr: "192.0.2.53:53"},
		{Raw: "tls://192.0.2.1#dns.example", Proto: ProtoTLS, Addr: "192.0.2.1:853", ServerName: "dns.example"},
		{Raw: "https://dns.example/dns-query", Proto: ProtoHTTPS, Addr: "dns.example:443", ServerName: "dns.example", URL: "https://dns.example/dns-query"},
	}
	for i, w := range want {
		if cfg.Upstream.Servers[i] != w {
			t.Errorf("server %d = %+v, want %+v", i, cfg.Upstream.Servers[i], w)
		}
	}
	if f := cfg.Upstream.Forward; len(f) != 1 || f[0].Zones[0] != "corp.example" || f[0].Servers[0].Addr != "10.0.0.53:5300" || f[0].Line != 12 {
		t.Errorf("forward = %+v", f)
	}
	if cfg.Cache.Size != 10 || cfg.Cache.ServeStale != time.Hour || cfg.Cache.MaxTTL != 24*time.Hour {
		t.Errorf("cache = %+v (unset keys keep their defaults)", cfg.Cache)
	}
	if cfg.Blocking.Lists[0] != "/etc/appfence/lists/*.toml" || cfg.Log.QueryLog != "/etc/appfence/q.log" {
		t.Errorf("relative paths: %v %v", cfg.Blocking.Lists, cfg.Log.QueryLog)
	}
	if l := cfg.Log; l.Dnstap != "tcp:127.0.0.1:6000" || l.DnstapIdentity != "resolver-1" || l.DnstapVersion != "" {
		t.Errorf("dnstap = %q %q %q", l.Dnstap, l.DnstapIdentity, l.DnstapVersion)
	}
	if cfg.Blocking.SinkholeIPv4 != netip.MustParseAddr("192.0.2.99") {
		t.Errorf("sinkhole = %v", cfg.Blocking.SinkholeIPv4)
	}
	g := cfg.Groups[0]
	if g.Name != "investigators" || len(g.Clients) != 3 || g.Clients[1] != netip.MustParsePrefix("10.20.31.17/32") || g.Allow[0] != (AppRef{"tiktok", "group[0].allow[0]", 29}) || g.Line != 26 {
		t.Errorf("group = %+v", g)
	}
	if cfg.Groups[1].Name != "default" || cfg.Groups[1].Block[0].Name != "facebook" {
		t.Errorf("default group = %+v", cfg.Groups[1])
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // each must appear in the error text
	}{
		{"unknown key", "[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = 1\n",
			[]string{`f.toml:3: server.listne: unknown key`}},
		{"unknown key in group", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[group]]\nname = \"b\"\nclinets = [\"10.1.0.0/16\"]\n",
			[]string{`f.toml:6: group[1].clinets: unknown key`, `f.toml:4: group[1].clients: group "b" has no clients`}},
		{"unknown section", "[sever]\nlisten = 1\n", []string{`f.toml:1: sever: unknown key`}},
		{"bad cidr", "[[group]]\nname = \"a\"\nclients = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n",
			[]string{`f.toml:5: group[0].clients[1]: "10.0.0.0/33": invalid CIDR prefix`}},
		{"host bits", "[server]\nallow_clients = [\"10.0.0.1/8\"]\n",
			[]string{`f.toml:2: server.allow_clients[0]: "10.0.0.1/8": host bits are set (did you mean 10.0.0.0/8?)`}},
		{"duplicate group", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[group]]\nname = \"a\"\nclients = [\"10.1.0.0/16\"]\n",
			[]string{`f.toml:5: group[1].name: duplicate group name "a" (first at line 2)`}},
		{"prefix in two groups", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[group]]\nname = \"b\"\nclients = [\"10.0.0.0/8\"]\n",
			[]string{`f.toml:6: group[1].clients[0]: 10.0.0.0/8 is also in group "a" (line 3)`}},
		{"bad duration", "[upstream]\ntimeout = \"2 seconds\"\n",
			[]string{`f.toml:2: upstream.timeout: "2 seconds": not a duration`}},
		{"zero timeout", "[upstream]\ntimeout = \"0s\"\n", []string{`upstream.timeout: "0s": must be more than zero`}},
		{"negative TCP query bound", "[server]\nmax_tcp_queries_per_connection = -1\n",
			[]string{`f.toml:2: server.max_tcp_queries_per_connection: -1: must be 0 (no bound) or more`}},
		{"negative udp_sockets", "[server]\nudp_sockets = -1\n", []string{`f.toml:2: server.udp_sockets: -1: must be 0 (one per GOMAXPROCS) to 256`}},
		{"too many udp_sockets", "[server]\nudp_sockets = 257\n", []string{`f.toml:2: server.udp_sockets: 257: must be 0`}},
		{"no upstream", "[upstream]\nservers = []\n", []string{`f.toml:2: upstream.servers: no upstream servers`}},
		{"bad upstream", "[upstream]\nservers = [\"dns.example:53\", \"ftp://x\"]\n",
			[]string{`upstream.servers[0]: "dns.example:53": a plain upstream needs an IP address`, `upstream.servers[1]: "ftp://x": unknown scheme`}},
		{"identity too long", "[server]\nidentity = \"" + strings.Repeat("x", 256) + "\"\n", []string{`f.toml:2: server.identity: 256 bytes: at most 255`}},
		{"bad strategy", "[upstream]\nstrategy = \"random\"\n", []string{`f.toml:2: upstream.strategy: "random": must be one of`}},
		{"bad response", "[blocking]\nresponse = \"drop\"\n", []string{`f.toml:2: blocking.response: "drop"`}},
		{"sinkhole without address", "[blocking]\nresponse = \"sinkhole\"\n", []string{`needs sinkhole_ipv4 or sinkhole_ipv6`}},
		{"bad app name", "[blocking]\nblock = [\"TikTok\"]\n", []string{`f.toml:2: blocking.block[0]: "TikTok"`}},
		{"block and monitor", "[blocking]\nblock = [\"x\"]\nmonitor = [\"x\"]\n", []string{`f.toml:3: blocking.monitor[0]: "x" is in both block and monitor`}},
		{"allow and block", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nallow = [\"x\"]\nblock = [\"x\"]\n",
			[]string{`f.toml:4: group[0].allow[0]: "x" is in both allow and block`}},
		{"bad group mode", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nmode = \"allow\"\n",
			[]string{`f.toml:4: group[0].mode: mode "allow": want "blocklist" or "allowlist"`}},
		{"default with clients", "[[group]]\nname = \"default\"\nclients = [\"10.0.0.0/8\"]\n", []string{`takes no clients`}},
		{"wrong type", "[server]\nrate_limit = \"many\"\n", []string{`f.toml:2`, `rate_limit`}},
		{"syntax", "[server\nlisten = 1\n", []string{`f.toml:2: expected`}},
		{"bad listen", "[server]\nlisten = [\"localhost:53\"]\n", []string{`server.listen[0]: "localhost:53": host "localhost" is not an IP address`}},
		{"bad zone", "[[upstream.forward]]\nzones = [\"a..b\"]\nservers = [\"10.0.0.53\"]\n", []string{`f.toml:2: upstream.forward[0].zones[0]: "a..b"`}},
		{"missing ca", "[upstream]\nca_file = \"nope.pem\"\n", []string{`f.toml:2: upstream.ca_file:`}},
		{"duplicate upstream", "[upstream]\nservers = [\"192.0.2.1\", \"192.0.2.1\"]\n", []string{`f.toml:2: upstream.servers[1]: "192.0.2.1" listed twice`}},
		{"min over max", "[cache]\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n", []string{`cache.min_ttl: 2h0m0s is more than max_ttl 1h0m0s`}},
		{"tls listener without cert", "[server.tls]\ndot_listen = [\":853\"]\n", []string{`f.toml:1: server.tls.cert_file: needed for the encrypted listeners`}},
		{"tls missing cert", "[server.tls]\ncert_file = \"nope.pem\"\nkey_file = \"nope.key\"\ndot_listen = [\":853\"]\n", []string{`f.toml:2: server.tls.cert_file: open`}},
		{"tls no key", "[server.tls]\ncert_file = \"c.pem\"\ndoh_listen = [\":443\"]\n", []string{`server.tls.key_file: needed with cert_file`}},
		{"tls no listener", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n", []string{`no dot_listen, doh_listen or doq_listen`}},
		{"tls bad listen", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\ndot_listen = [\"localhost:853\"]\n", []string{`f.toml:4: server.tls.dot_listen[0]: "localhost:853"`}},
		{"tls bad server name", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nserver_name = \"*.x\"\ndot_listen = [\":853\"]\n", []string{`f.toml:4: server.tls.server_name: "*.x": not a host name`}},
		{"tls missing client ca", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\ndot_listen = [\":853\"]\nclient_ca_file = \"ca.pem\"\n", []string{`f.toml:5: server.tls.client_ca_file:`}},
		{"bad client id", "[[group]]\nname = \"a\"\nclient_ids = [\"ok-1\", \"not_ok\"]\n", []string{`f.toml:3: group[0].client_ids[1]: "not_ok": a ClientID is 1 to 63`}},
		{"client id in two groups", "[[group]]\nname = \"a\"\nclient_ids = [\"x\"]\n[[group]]\nname = \"b\"\nclient_ids = [\"X\"]\n", []string{`f.toml:6: group[1].client_ids[0]: ClientID "x" is also in group "a" (line 3)`}},
		{"bad cert hash", "[[group]]\nname = \"a\"\nclient_certs = [\"sha256:abc\"]\n", []string{`f.toml:3: group[0].client_certs[0]: "sha256:abc"`}},
		{"require_cert without certs", "[[group]]\nname = \"a\"\nclient_ids = [\"x\"]\nrequire_cert = true\n", []string{`f.toml:4: group[0].require_cert: group "a" requires a certificate but names none`, `takes no clients or client_ids`}},
		{"default with client ids", "[[group]]\nname = \"default\"\nclient_ids = [\"x\"]\n", []string{`takes no client_ids, client_certs or require_cert`}},
		{"bad log level", "[log]\nlevel = \"loud\"\n", []string{`f.toml:2: log.level: "loud"`}},
		{"dnstap without scheme", "[log]\ndnstap = \"/run/dnstap.sock\"\n", []string{`f.toml:2: log.dnstap: "/run/dnstap.sock": write unix:/path/to.sock or tcp:host:port`}},
		{"dnstap udp", "[log]\ndnstap = \"udp:127.0.0.1:6000\"\n", []string{`f.toml:2: log.dnstap: "udp:127.0.0.1:6000": the scheme must be unix: or tcp:`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.toml), t.TempDir())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("f.toml", []byte("[upstream]\ntimeout = \"x\"\nstrategy = \"y\"\n[log]\nlevel = \"z\"\n"), t.TempDir())
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("%d errors reported, want 3:\n%v", n, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(path, []byte("[blocking]\nlists = [\"apps/*.toml\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != dir || cfg.Blocking.Lists[0] != filepath.Join(dir, "apps/*.toml") {
		t.Errorf("dir %q lists %v", cfg.Dir, cfg.Blocking.Lists)
	}
	if want := filepath.Join(dir, ".appfence-cache"); cfg.Blocking.CacheDir != want {
		t.Errorf("cache_dir %q, want %q beside the config", cfg.Blocking.CacheDir, want)
	}
	os.WriteFile(path, []byte("[blocking]\ncache_dir = \"/var/cache/appfence\"\n"), 0o644)
	if cfg, err := Load(path); err != nil || cfg.Blocking.CacheDir != "/var/cache/appfence" {
		t.Errorf("cache_dir = %q, %v", cfg.Blocking.CacheDir, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in   string
		want UpstreamServer
		err  string
	}{
		{in: "192.0.2.53", want: UpstreamServer{Proto: ProtoDNS, Addr: "192.0.2.53:53"}},
		{in: "[2001:db8::53]:5353", want: UpstreamServer{Proto: ProtoDNS, Addr: "[2001:db8::53]:5353"}},
		{in: "2001:db8::53", want: UpstreamServer{Proto: ProtoDNS, Addr: "[2001:db8::53]:53"}},
		{in: "tls://192.0.2.1", want: UpstreamServer{Proto: ProtoTLS, Addr: "192.0.2.1:853", ServerName: "192.0.2.1"}},
		{in: "tls://192.0.2.1:8853#dns.example", want: UpstreamServer{Proto: ProtoTLS, Addr: "192.0.2.1:8853", ServerName: "dns.example"}},
		{in: "tls://[2001:db8::1]#dns.example", want: UpstreamServer{Proto: ProtoTLS, Addr: "[2001:db8::1]:853", ServerName: "dns.example"}},
		{in: "tls://dns.example", want: UpstreamServer{Proto: ProtoTLS, Addr: "dns.example:853", ServerName: "dns.example"}},
		{in: "https://dns.example/dns-query", want: UpstreamServer{Proto: ProtoHTTPS, Addr: "dns.example:443", ServerName: "dns.example", URL: "https://dns.example/dns-query"}},
		{in: "https://dns.example", want: UpstreamServer{Proto: ProtoHTTPS, Addr: "dns.example:443", ServerName: "dns.example", URL: "https://dns.example/dns-query"}},
		{in: "https://dns.example:8443/q#192.0.2.1", want: UpstreamServer{Proto: ProtoHTTPS, Addr: "192.0.2.1:8443", ServerName: "dns.example", URL: "https://dns.example:8443/q"}},
		{in: "https://dns.example/dns-query#2001:db8::1", want: UpstreamServer{Proto: ProtoHTTPS, Addr: "[2001:db8::1]:443", ServerName: "dns.example", URL: "https://dns.example/dns-query"}},
		{in: "dns.example", err: "needs an IP address"},
		{in: "tls://192.0.2.1#", err: "empty server name"},
		{in: "tls://192.0.2.1:99999", err: "port"},
		{in: "https://dns.example/dns-query#dns2.example", err: "not an IP address to dial"},
		{in: "https:///dns-query", err: "not a DoH URL"},
		{in: "quic://192.0.2.1", err: "unknown scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Raw = tt.in
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty.pem"), []byte("not a certificate\n"), 0o644)
	_, err := Parse("f.toml", []byte("[upstream]\nca_file = \"empty.pem\"\n"), dir)
	if err == nil || !strings.Contains(err.Error(), "f.toml:2: upstream.ca_file:") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("error %v, want the file named with no PEM certificate", err)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), dnstest.NewCA(t).PEM, 0o644)
	cfg, err := Parse("f.toml", []byte("[upstream]\nca_file = \"ca.pem\"\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca_file = %q, want it relative to the config's directory", cfg.Upstream.CAFile)
	}
}

func TestCAFileNotRegular(t *testing.T) {
	_, err := Parse("f.toml", []byte("[upstream]\nca_file = \"/dev/zero\"\n"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "f.toml:2: upstream.ca_file: /dev/zero: not a regular file") {
		t.Errorf("error = %v", err)
	}
}

// TestChaosIdentity: server.identity is the host name when left out, and
// may be set or emptied (REFUSED); server.version is off unless set.
func TestChaosIdentity(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		toml              string
		identity, version string
	}{
		{"", host, ""},
		{"[server]\nidentity = \"dns-1\"\nversion = \"appfence\"\n", "dns-1", "appfence"},
		{"[server]\nidentity = \"\"\n", "", ""},
	}
	for _, tt := range tests {
		cfg, err := Parse("f.toml", []byte(tt.toml), t.TempDir())
		if err != nil {
			t.Fatalf("%q: %v", tt.toml, err)
		}
		if cfg.Server.Identity != tt.identity || cfg.Server.Version != tt.version {
			t.Errorf("%q: identity %q version %q, want %q %q", tt.toml, cfg.Server.Identity, cfg.Server.Version, tt.identity, tt.version)
		}
	}
}

func TestBearerTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	tests := []struct {
		file    string
		want    string // the token, or "" for an error
		wantErr string
	}{
		{write("good", "0123456789abcdef-token\n"), "0123456789abcdef-token", ""},
		{write("short", "short\n"), "", "at least 16"},
		{write("space", "0123456789 abcdef-token"), "", "white space inside"},
		{write("empty", "\n"), "", "at least 16"},
		{write("big", strings.Repeat("x", 5000)), "", "larger than 4 KiB"},
		{"missing", "", "no such file"},
		{".", "", "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte("[metrics]\nbearer_token_file = \""+tt.file+"\"\n"), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "metrics.bearer_token_file") {
					t.Fatalf("err %v, want one about metrics.bearer_token_file with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics.BearerTokenFile != filepath.Join(dir, tt.file) {
				t.Errorf("BearerTokenFile %q, want it resolved against the config's folder", cfg.Metrics.BearerTokenFile)
			}
			tok, err := ReadTokenFile(cfg.Metrics.BearerTokenFile)
			if err != nil || string(tok) != tt.want {
				t.Errorf("ReadTokenFile: %q %v, want %q", tok, err, tt.want)
			}
		})
	}
	if Default().Metrics.BearerTokenFile != "" {
		t.Error("the built-in config has a bearer token file")
	}
}
