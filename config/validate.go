package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/iptable"
	"github.com/appfence/appfence/internal/tomlpos"
	"github.com/appfence/appfence/querylog/dnstap"
)

// validator turns a rawConfig into a Config, collecting every problem.
type validator struct {
	file string
	dir  string
	pos  *tomlpos.Index
	errs []error
}

// line returns the line of path, falling back to the enclosing key for an
// element the locator could not place.
func (v *validator) line(path string) int { return v.pos.Near(path) }

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &tomlpos.Error{File: v.file, Line: v.line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func elem(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func (v *validator) config(raw *rawConfig) *Config {
	cfg := &Config{File: v.file, Dir: v.dir}
	v.server(raw, &cfg.Server)
	v.upstream(raw, &cfg.Upstream)
	v.cache(raw, &cfg.Cache)
	v.blocking(raw, &cfg.Blocking)
	cfg.Groups = v.groups(raw)
	v.metrics(raw, &cfg.Metrics)
	v.log(raw, &cfg.Log)
	return cfg
}

func (v *validator) server(raw *rawConfig, s *Server) {
	r := raw.Server
	if len(r.Listen) == 0 {
		v.errorf("server.listen", "at least one address is needed")
	}
	for i, a := range r.Listen {
		if err := checkHostPort(a); err != nil {
			v.errorf(elem("server.listen", i), "%q: %v", a, err)
			continue
		}
		s.Listen = append(s.Listen, a)
	}
	if len(r.AllowClients) == 0 {
		v.errorf("server.allow_clients", "empty: every client would be refused (write \"0.0.0.0/0\", \"::/0\" to answer anyone)")
	}
	for i, c := range r.AllowClients {
		p, err := iptable.ParsePrefix(c)
		if err != nil {
			v.errorf(elem("server.allow_clients", i), "%v", err)
			continue
		}
		s.AllowClients = append(s.AllowClients, p)
	}
	if r.RateLimit < 0 {
		v.errorf("server.rate_limit", "%d: must be 0 (off) or more", r.RateLimit)
	}
	s.RateLimit = r.RateLimit
	s.TCPIdleTimeout = v.duration("server.tcp_idle_timeout", r.TCPIdleTimeout, true)
	if r.MaxTCPConnections < 1 {
		v.errorf("server.max_tcp_connections", "%d: must be at least 1", r.MaxTCPConnections)
	}
	s.MaxTCPConnections = r.MaxTCPConnections
	if r.MaxTCPPerClient < 1 {
		v.errorf("server.max_tcp_connections_per_client", "%d: must be at least 1", r.MaxTCPPerClient)
	}
	s.MaxTCPConnectionsPerClient = r.MaxTCPPerClient
	if r.MaxTCPQueries < 0 {
		v.errorf("server.max_tcp_queries_per_connection", "%d: must be 0 (no bound) or more", r.MaxTCPQueries)
	}
	s.MaxTCPQueriesPerConnection = r.MaxTCPQueries
	if r.UDPSockets < 0 || r.UDPSockets > maxUDPSockets {
		v.errorf("server.udp_sockets", "%d: must be 0 (one per GOMAXPROCS) to %d", r.UDPSockets, maxUDPSockets)
	}
	s.UDPSockets = r.UDPSockets
	s.Identity = hostname()
	if r.Identity != nil {
		s.Identity = *r.Identity
	}
	v.chaosText("server.identity", s.Identity)
	s.Version = r.Version
	v.chaosText("server.version", s.Version)
	v.tls(raw, &s.TLS)
}

// hostname is the default server.identity: the host name, or "" (REFUSED)
// when the system does not tell it.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// chaosText checks the text of a CHAOS TXT answer: one character-string
// (RFC 1035, 3.3: at most 255 bytes).
func (v *validator) chaosText(path, text string) {
	if len(text) > 255 {
		v.errorf(path, "%d bytes: at most 255 fit in a TXT string", len(text))
	}
}

// tls validates [server.tls].
func (v *validator) tls(raw *rawConfig, t *TLS) {
	r := raw.Server.TLS
	listeners := len(r.DoTListen) + len(r.DoHListen) + len(r.DoQListen)
	if r.CertFile == "" {
		if listeners > 0 || r.KeyFile != "" || r.ClientCAFile != "" {
			v.errorf("server.tls.cert_file", "needed for the encrypted listeners (dot_listen, doh_listen, doq_listen)")
		}
		return
	}
	if r.KeyFile == "" {
		v.errorf("server.tls.key_file", "needed with cert_file")
	}
	if listeners == 0 {
		v.errorf("server.tls", "cert_file is set but no dot_listen, doh_listen or doq_listen")
	}
	t.CertFile, t.KeyFile = v.path(r.CertFile), v.path(r.KeyFile)
	if r.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.errorf("server.tls.cert_file", "%v", err)
		}
	}
	if r.ServerName != "" {
		n := dnsname.Canonical(r.ServerName)
		if _, ok := dns.IsDomainName(n); !ok || strings.Contains(n, "*") || n == "" {
			v.errorf("server.tls.server_name", "%q: not a host name", r.ServerName)
		}
		t.ServerName = n
	}
	listen := func(key string, addrs []string) []string {
		var out []string
		for i, a := range addrs {
			if err := checkHostPort(a); err != nil {
				v.errorf(elem(key, i), "%q: %v", a, err)
				continue
			}
			out = append(out, a)
		}
		return out
	}
	t.DoTListen = listen("server.tls.dot_listen", r.DoTListen)
	t.DoHListen = listen("server.tls.doh_listen", r.DoHListen)
	t.DoQListen = listen("server.tls.doq_listen", r.DoQListen)
	if r.ClientCAFile != "" {
		t.ClientCAFile = v.path(r.ClientCAFile)
		if err := checkCAFile(t.ClientCAFile); err != nil {
			v.errorf("server.tls.client_ca_file", "%v", err)
		}
	}
	for i, c := range r.ProxyProtocol {
		p, err := iptable.ParsePrefix(c)
		if err != nil {
			v.errorf(elem("server.tls.proxy_protocol", i), "%v", err)
			continue
		}
		t.ProxyProtocol = append(t.ProxyProtocol, p)
	}
}

var certNameRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (v *validator) upstream(raw *rawConfig, u *Upstream) {
	r := raw.Upstream
	if len(r.Servers) == 0 {
		v.errorf("upstream.servers", "no upstream servers: at least one is needed")
	}
	u.Servers = v.upstreamServers("upstream.servers", r.Servers)
	if !slices.Contains(Strategies, r.Strategy) {
		v.errorf("upstream.strategy", "%q: must be one of %s", r.Strategy, strings.Join(Strategies, ", "))
	}
	u.Strategy = r.Strategy
	u.Timeout = v.duration("upstream.timeout", r.Timeout, true)
	if r.CAFile != "" {
		u.CAFile = v.path(r.CAFile)
		if err := checkCAFile(u.CAFile); err != nil {
			v.errorf("upstream.ca_file", "%v", err)
		}
	}
	zones := map[string]string{}
	for i, f := range r.Forward {
		path := elem("upstream.forward", i)
		fw := Forward{Line: v.line(path)}
		if len(f.Zones) == 0 {
			v.errorf(path+".zones", "at least one zone is needed")
		}
		for j, z := range f.Zones {
			name, err := dnsname.Parse(z)
			if err != nil {
				v.errorf(elem(path+".zones", j), "%q: %v", z, err)
				continue
			}
			if other, dup := zones[name]; dup {
				v.errorf(elem(path+".zones", j), "zone %q is also forwarded by %s", name, other)
				continue
			}
			zones[name] = path
			fw.Zones = append(fw.Zones, name)
		}
		if len(f.Servers) == 0 {
			v.errorf(path+".servers", "no servers for this zone")
		}
		fw.Servers = v.upstreamServers(path+".servers", f.Servers)
		u.Forward = append(u.Forward, fw)
	}
	if r.MaxInFlightPerClient < 0 {
		v.errorf("upstream.max_in_flight_per_client", "%d: must be 0 (no bound) or more", r.MaxInFlightPerClient)
	}
	u.MaxInFlightPerClient = r.MaxInFlightPerClient
	if r.MaxInFlightPerZone < 0 {
		v.errorf("upstream.max_in_flight_per_zone", "%d: must be 0 (no bound) or more", r.MaxInFlightPerZone)
	}
	u.MaxInFlightPerZone = r.MaxInFlightPerZone
	v.trustAD(r.TrustAD, u)
}

// trustAD marks the servers listed in upstream.trust_ad, wherever they are
// listed (upstream.servers, upstream.forward). Only DoT and DoH servers
// may be trusted: their channel is authenticated, so an AD bit they set
// cannot have been forged on the way.
func (v *validator) trustAD(list []string, u *Upstream) {
	for i, s := range list {
		path := elem("upstream.trust_ad", i)
		us, err := ParseUpstream(s)
		if err != nil {
			v.errorf(path, "%v", err)
			continue
		}
		if us.Proto != ProtoTLS && us.Proto != ProtoHTTPS {
			v.errorf(path, "%q: only tls:// and https:// servers may be trusted for validation: AD from plain DNS can be forged on the way", s)
			continue
		}
		found := false
		mark := func(servers []UpstreamServer) {
			for j := range servers {
				if servers[j].Raw == us.Raw {
					servers[j].TrustAD, found = true, true
				}
			}
		}
		mark(u.Servers)
		for _, f := range u.Forward {
			mark(f.Servers)
		}
		if !found {
			v.errorf(path, "%q is not in upstream.servers or any upstream.forward servers", s)
		}
	}
}

func (v *validator) upstreamServers(path string, list []string) []UpstreamServer {
	var out []UpstreamServer
	for i, s := range list {
		us, err := ParseUpstream(s)
		if err != nil {
			v.errorf(elem(path, i), "%v", err)
			continue
		}
		if slices.ContainsFunc(out, func(o UpstreamServer) bool { return o.Raw == us.Raw }) {
			v.errorf(elem(path, i), "%q listed twice", s)
			continue
		}
		out = append(out, us)
	}
	return out
}

// checkCAFile checks that path is readable and holds at least one
// PEM-encoded certificate.
func checkCAFile(path string) error {
	data, err := ReadCAFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("%s: no PEM certificate in the file", path)
	}
	return nil
}

// maxCAFile bounds what ReadCAFile reads: a bundle of every public CA is
// about 200 KiB.
const maxCAFile = 4 << 20

// maxUDPSockets bounds server.udp_sockets: far more than cores on any host
// AppFence serves.
const maxUDPSockets = 256

// ReadCAFile reads a CA bundle: a regular file of at most 4 MiB (so that a
// mistake such as /dev/zero fails instead of reading forever).
func ReadCAFile(path string) ([]byte, error) {
	return readRegularFile(path, maxCAFile, "4 MiB")
}

// readRegularFile reads path, which must be a regular file of at most
// limit bytes (said as size in the error).
func readRegularFile(path string, limit int, size string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s: larger than %s", path, size)
	}
	return data, nil
}

func (v *validator) cache(raw *rawConfig, c *Cache) {
	r := raw.Cache
	if r.Size < 0 {
		v.errorf("cache.size", "%d: must be 0 (no cache) or more", r.Size)
	}
	c.Size = r.Size
	c.MinTTL = v.duration("cache.min_ttl", r.MinTTL, false)
	c.MaxTTL = v.duration("cache.max_ttl", r.MaxTTL, false)
	c.MaxNegativeTTL = v.duration("cache.max_negative_ttl", r.MaxNegativeTTL, false)
	if c.MinTTL > c.MaxTTL {
		v.errorf("cache.min_ttl", "%s is more than max_ttl %s", c.MinTTL, c.MaxTTL)
	}
	c.Prefetch = r.Prefetch
	c.ServeStale = v.duration("cache.serve_stale", r.ServeStale, false)
}

var appNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// AppNameValid reports whether name is a valid app name.
func AppNameValid(name string) bool { return appNameRE.MatchString(name) }

func (v *validator) appRefs(path string, names []string) []AppRef {
	var refs []AppRef
	seen := map[string]bool{}
	for i, n := range names {
		p := elem(path, i)
		if !AppNameValid(n) {
			v.errorf(p, "%q: app names are lower-case letters, digits and '-'", n)
			continue
		}
		if seen[n] {
			v.errorf(p, "%q listed twice", n)
			continue
		}
		seen[n] = true
		refs = append(refs, AppRef{Name: n, Key: p, Line: v.line(p)})
	}
	return refs
}

func (v *validator) blocking(raw *rawConfig, b *Blocking) {
	r := raw.Blocking
	if !slices.Contains(Responses, r.Response) {
		v.errorf("blocking.response", "%q: must be one of %s", r.Response, strings.Join(Responses, ", "))
	}
	b.Response = r.Response
	if r.SinkholeIPv4 != "" {
		a, err := netip.ParseAddr(r.SinkholeIPv4)
		if err != nil || !a.Is4() {
			v.errorf("blocking.sinkhole_ipv4", "%q: not an IPv4 address", r.SinkholeIPv4)
		}
		b.SinkholeIPv4 = a
	}
	if r.SinkholeIPv6 != "" {
		a, err := netip.ParseAddr(r.SinkholeIPv6)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			v.errorf("blocking.sinkhole_ipv6", "%q: not an IPv6 address", r.SinkholeIPv6)
		}
		b.SinkholeIPv6 = a
	}
	if r.Response == ResponseSinkhole && r.SinkholeIPv4 == "" && r.SinkholeIPv6 == "" {
		v.errorf("blocking.response", "\"sinkhole\" needs sinkhole_ipv4 or sinkhole_ipv6")
	}
	b.TTL = v.duration("blocking.ttl", r.TTL, false)
	if b.TTL > 0x7fffffff*time.Second {
		v.errorf("blocking.ttl", "%s: too long for a DNS TTL", b.TTL)
	}
	b.ExtendedErrors = r.ExtendedErrors
	b.InspectCNAMEs = r.InspectCNAMEs
	for i, g := range r.Lists {
		if _, err := filepath.Match(g, ""); err != nil {
			v.errorf(elem("blocking.lists", i), "%q: %v", g, err)
			continue
		}
		b.Lists = append(b.Lists, v.path(g))
	}
	b.Watch = r.Watch
	b.CacheDir = v.path(r.CacheDir)
	if r.CacheDir == "" {
		b.CacheDir = v.path(DefaultCacheDir)
	}
	b.Block = v.appRefs("blocking.block", r.Block)
	b.Monitor = v.appRefs("blocking.monitor", r.Monitor)
	if r.MaxRuleLoss < 0 || r.MaxRuleLoss > 1 {
		v.errorf("blocking.max_rule_loss", "%v: must be a fraction from 0 to 1", r.MaxRuleLoss)
	}
	b.MaxRuleLoss = r.MaxRuleLoss
	for i, s := range r.NAT64Prefixes {
		p, err := iptable.ParsePrefix(s)
		if err == nil && !iptable.NAT64Length(p) {
			err = fmt.Errorf("%q: a NAT64 prefix is an IPv6 /32, /40, /48, /56, /64 or /96 (RFC 6052)", s)
		}
		if err != nil {
			v.errorf(elem("blocking.nat64_prefixes", i), "%v", err)
			continue
		}
		b.NAT64Prefixes = append(b.NAT64Prefixes, p)
	}
	for _, m := range b.Monitor {
		if slices.ContainsFunc(b.Block, func(a AppRef) bool { return a.Name == m.Name }) {
			v.errs = append(v.errs, &tomlpos.Error{File: v.file, Line: m.Line, Key: m.Key,
				Msg: fmt.Sprintf("%q is in both block and monitor", m.Name)})
		}
	}
}

var groupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (v *validator) groups(raw *rawConfig) []Group {
	var groups []Group
	names := map[string]int{}           // name -> line
	owners := map[netip.Prefix]string{} // prefix -> "group X (line N)"
	idOwners := map[string]string{}     // ClientID -> "group X (line N)"
	certOwners := map[string]string{}   // certificate name -> "group X (line N)"
	for i, r := range raw.Groups {
		path := elem("group", i)
		g := Group{Name: r.Name, Line: v.line(path)}
		switch {
		case r.Name == "":
			v.errorf(path+".name", "every group needs a name")
		case !groupNameRE.MatchString(r.Name):
			v.errorf(path+".name", "%q: group names are letters, digits, '.', '_' and '-' (at most 64)", r.Name)
		}
		if line, dup := names[r.Name]; dup && r.Name != "" {
			v.errorf(path+".name", "duplicate group name %q (first at line %d)", r.Name, line)
		}
		names[r.Name] = v.line(path + ".name")
		if r.Name == DefaultGroup && len(r.Clients) > 0 {
			v.errorf(path+".clients", "the %q group holds every client that matches no other group: it takes no clients", DefaultGroup)
		}
		if r.Name == DefaultGroup && (len(r.ClientIDs) > 0 || len(r.ClientCerts) > 0 || r.RequireCert) {
			v.errorf(path, "the %q group takes no client_ids, client_certs or require_cert", DefaultGroup)
		}
		if r.Name != DefaultGroup && len(r.Clients)+len(r.ClientIDs)+len(r.ClientCerts) == 0 {
			v.errorf(path+".clients", "group %q has no clients, client_ids or client_certs", r.Name)
		}
		if r.RequireCert {
			g.RequireCert = true
			if len(r.ClientCerts) == 0 {
				v.errorf(path+".require_cert", "group %q requires a certificate but names none in client_certs", r.Name)
			}
			if len(r.Clients)+len(r.ClientIDs) > 0 {
				v.errorf(path+".require_cert", "group %q: only a certificate places a client in it, so it takes no clients or client_ids", r.Name)
			}
		}
		for j, id := range r.ClientIDs {
			key := elem(path+".client_ids", j)
			c := strings.ToLower(id)
			if !ClientIDRE.MatchString(c) {
				v.errorf(key, "%q: a ClientID is 1 to 63 of a-z, 0-9 and '-'", id)
				continue
			}
			if v.claim(idOwners, key, "ClientID", c, r.Name) {
				g.ClientIDs = append(g.ClientIDs, c)
			}
		}
		for j, n := range r.ClientCerts {
			key := elem(path+".client_certs", j)
			c := strings.ToLower(strings.TrimSuffix(n, "."))
			if strings.HasPrefix(c, "sha256:") && !certNameRE.MatchString(c) {
				v.errorf(key, "%q: sha256: is followed by the 64 hex digits of the certificate's SHA-256", n)
				continue
			}
			if c == "" {
				v.errorf(key, "empty certificate name")
				continue
			}
			if v.claim(certOwners, key, "certificate", c, r.Name) {
				g.ClientCerts = append(g.ClientCerts, c)
			}
		}
		for j, c := range r.Clients {
			p, err := iptable.ParsePrefix(c)
			if err != nil {
				v.errorf(elem(path+".clients", j), "%v", err)
				continue
			}
			here := fmt.Sprintf("group %q (line %d)", r.Name, v.line(elem(path+".clients", j)))
			if other, dup := owners[p]; dup {
				v.errorf(elem(path+".clients", j), "%s is also in %s", p, other)
				continue
			}
			owners[p] = here
			g.Clients = append(g.Clients, p)
		}
		switch r.Mode {
		case "", "blocklist":
		case "allowlist":
			g.Allowlist = true
		default:
			v.errorf(path+".mode", "mode %q: want \"blocklist\" or \"allowlist\"", r.Mode)
		}
		g.Allow = v.appRefs(path+".allow", r.Allow)
		g.Block = v.appRefs(path+".block", r.Block)
		for _, a := range g.Allow {
			if slices.ContainsFunc(g.Block, func(b AppRef) bool { return b.Name == a.Name }) {
				v.errs = append(v.errs, &tomlpos.Error{File: v.file, Line: a.Line, Key: a.Key,
					Msg: fmt.Sprintf("%q is in both allow and block of group %q", a.Name, r.Name)})
			}
		}
		groups = append(groups, g)
	}
	return groups
}

func (v *validator) metrics(raw *rawConfig, m *Metrics) {
	if l := raw.Metrics.Listen; l != "" {
		if err := checkHostPort(l); err != nil {
			v.errorf("metrics.listen", "%q: %v", l, err)
		}
	}
	m.Listen = raw.Metrics.Listen
	if f := raw.Metrics.BearerTokenFile; f != "" {
		m.BearerTokenFile = v.path(f)
		if _, err := ReadTokenFile(m.BearerTokenFile); err != nil {
			v.errorf("metrics.bearer_token_file", "%v", err)
		}
	}
}

// MinTokenLength is the shortest bearer token ReadTokenFile accepts.
const MinTokenLength = 16

// ReadTokenFile reads a bearer token: a regular file of at most 4 KiB whose
// content, without surrounding white space, is at least MinTokenLength
// bytes and has no white space inside.
func ReadTokenFile(path string) ([]byte, error) {
	data, err := readRegularFile(path, 4<<10, "4 KiB: not a token")
	if err != nil {
		return nil, err
	}
	tok := bytes.TrimSpace(data)
	if len(tok) < MinTokenLength {
		return nil, fmt.Errorf("%s: the token is %d bytes long, want at least %d", path, len(tok), MinTokenLength)
	}
	if bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("%s: the token has white space inside", path)
	}
	return tok, nil
}

func (v *validator) log(raw *rawConfig, l *Log) {
	r := raw.Log
	oneOf := func(key, val string, valid ...string) {
		if !slices.Contains(valid, val) {
			v.errorf(key, "%q: must be one of %s", val, strings.Join(valid, ", "))
		}
	}
	oneOf("log.level", r.Level, "debug", "info", "warn", "error")
	oneOf("log.format", r.Format, "text", "json")
	oneOf("log.query_log_scope", r.QueryLogScope, "blocked", "all")
	l.Level, l.Format, l.QueryLogScope = r.Level, r.Format, r.QueryLogScope
	l.QueryLog = r.QueryLog
	if r.QueryLog != "" && r.QueryLog != "-" {
		l.QueryLog = v.path(r.QueryLog)
	}
	l.AnonymizeClients = r.AnonymizeClients
	if r.Dnstap != "" {
		if _, err := dnstap.ParseTarget(r.Dnstap); err != nil {
			v.errorf("log.dnstap", "%v", err)
		}
	}
	l.Dnstap, l.DnstapIdentity, l.DnstapVersion = r.Dnstap, r.DnstapIdentity, r.DnstapVersion
}

// duration parses a Go duration; positive requires it to be more than zero.
func (v *validator) duration(key, s string, positive bool) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.errorf(key, "%q: not a duration (write e.g. \"2s\", \"500ms\", \"1h\")", s)
	case d < 0:
		v.errorf(key, "%q: must not be negative", s)
	case positive && d == 0:
		v.errorf(key, "%q: must be more than zero", s)
	}
	return d
}

// path makes p absolute against the config's directory.
func (v *validator) path(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.dir, p)
}

// checkHostPort accepts "ip:port" or ":port" with a numeric port.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("not host:port: %v", err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host %q is not an IP address", host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// ParseUpstream parses an upstream server entry: "host:port" or "host"
// (plain DNS, port 53), "tls://host[:port][#server-name]" (DoT, port 853)
// or "https://host[:port]/path[#ip]" (DoH; the optional IP address is
// dialled instead of resolving host, which stays the TLS server name).
func ParseUpstream(s string) (UpstreamServer, error) {
	us := UpstreamServer{Raw: s}
	switch {
	case strings.HasPrefix(s, "tls://"):
		rest := strings.TrimPrefix(s, "tls://")
		host, name, hasName := strings.Cut(rest, "#")
		addr, h, err := withDefaultPort(host, "853")
		if err != nil {
			return us, fmt.Errorf("%q: %v", s, err)
		}
		if hasName && name == "" {
			return us, fmt.Errorf("%q: empty server name after '#'", s)
		}
		if name == "" {
			name = h
		}
		us.Proto, us.Addr, us.ServerName = ProtoTLS, addr, name
	case strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return us, fmt.Errorf("%q: not a DoH URL like https://dns.example/dns-query", s)
		}
		if u.Path == "" {
			u.Path = "/dns-query"
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		us.Proto, us.ServerName = ProtoHTTPS, u.Hostname()
		us.Addr = net.JoinHostPort(u.Hostname(), port)
		if u.Fragment != "" {
			ip, err := netip.ParseAddr(strings.Trim(u.Fragment, "[]"))
			if err != nil {
				return us, fmt.Errorf("%q: %q after '#' is not an IP address to dial", s, u.Fragment)
			}
			us.Addr = net.JoinHostPort(ip.String(), port)
			u.Fragment, u.RawFragment = "", ""
		}
		us.URL = u.String()
	case strings.Contains(s, "://"):
		return us, fmt.Errorf("%q: unknown scheme (use host:port, tls:// or https://)", s)
	default:
		addr, h, err := withDefaultPort(s, "53")
		if err != nil {
			return us, fmt.Errorf("%q: %v", s, err)
		}
		if _, err := netip.ParseAddr(h); err != nil {
			return us, fmt.Errorf("%q: a plain upstream needs an IP address (a name would need a resolver to find it)", s)
		}
		us.Proto, us.Addr = ProtoDNS, addr
	}
	return us, nil
}

// withDefaultPort returns host:port, adding port when s has none.
func withDefaultPort(s, port string) (addr, host string, err error) {
	if s == "" {
		return "", "", fmt.Errorf("empty address")
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return net.JoinHostPort(a.String(), port), a.String(), nil
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", "", fmt.Errorf("not host:port")
		}
		return net.JoinHostPort(s, port), s, nil
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	if h == "" {
		return "", "", fmt.Errorf("no host")
	}
	return net.JoinHostPort(h, p), h, nil
}

// claim records that the identity name (a ClientID or a certificate name,
// what says which) at key belongs to group, and reports false with an
// error when another group already holds it: one identity, one group.
func (v *validator) claim(owners map[string]string, key, what, name, group string) bool {
	if other, dup := owners[name]; dup {
		v.errorf(key, "%s %q is also in %s", what, name, other)
		return false
	}
	owners[name] = fmt.Sprintf("group %q (line %d)", group, v.line(key))
	return true
}
