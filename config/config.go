// Package config owns the AppFence configuration file: its schema, the
// built-in defaults (default.toml, embedded) and validation. Load returns a
// Config whose values are typed and checked; every error names the file, the
// line and the key.
//
// Whether an app name refers to a defined app is checked later, when the
// policy is built from the config and the app definitions; AppRef keeps the
// position for that error.
//
// It owns the configuration schema, its defaults and its validation. It
// may import internal/dnsname, internal/iptable, internal/tomlpos and
// querylog/dnstap (to check a dnstap target); nothing that serves queries.
package config

import (
	"net/netip"
	"regexp"
	"time"
)

// BuiltinName is the file name reported for the embedded default config.
const BuiltinName = "builtin:appfence.toml"

// Config is a loaded, validated configuration.
type Config struct {
	// File is the path the config was loaded from, or BuiltinName.
	File string
	// Dir is the directory relative paths were resolved against.
	Dir string

	Server   Server
	Upstream Upstream
	Cache    Cache
	Blocking Blocking
	Groups   []Group
	Metrics  Metrics
	Log      Log
}

// Server is the [server] section: where to listen and whom to answer.
type Server struct {
	Listen            []string
	AllowClients      []netip.Prefix
	RateLimit         int
	TCPIdleTimeout    time.Duration
	MaxTCPConnections int
	TLS               TLS
	// MaxTCPConnectionsPerClient bounds the TCP connections of one client
	// address (IPv6: one /64).
	MaxTCPConnectionsPerClient int
	// MaxTCPQueriesPerConnection is how many queries one TCP connection
	// may send before it is closed gracefully (after the replies to those
	// already read); 0 is no bound.
	MaxTCPQueriesPerConnection int
	// UDPSockets is how many UDP sockets serve each listen address, bound
	// together with SO_REUSEPORT (the kernel spreads the clients over
	// them), each read by its own goroutines; 0 is one per GOMAXPROCS.
	// Read at start only, like Listen.
	UDPSockets int
	// Identity is the text of the CHAOS TXT answers to id.server and
	// hostname.bind (RFC 4892): the host name unless the key is set; ""
	// answers them REFUSED.
	Identity string
	// Version is the text of the CHAOS TXT answers to version.bind and
	// version.server; "" (the default) answers them REFUSED.
	Version string
}

// TLS is the [server.tls] section: the encrypted listeners. They are off
// unless CertFile is set.
type TLS struct {
	// CertFile and KeyFile are absolute paths of the PEM certificate chain
	// and its key; both are re-read when they change.
	CertFile string
	KeyFile  string
	// ServerName is the canonical name the certificate is for; a ClientID
	// in SNI is the one label in front of it. Empty: no ClientID in SNI.
	ServerName string
	// DoTListen and DoHListen are the addresses of DNS over TLS (RFC 7858)
	// and DNS over HTTPS (RFC 8484).
	DoTListen []string
	DoHListen []string
	// DoQListen are the UDP addresses of DNS over QUIC (RFC 9250).
	DoQListen []string
	// ClientCAFile is the CA bundle client certificates are verified
	// against; empty: clients are not asked for a certificate.
	ClientCAFile string
	// ProxyProtocol are the prefixes of the balancers whose DoT and DoH
	// connections start with a PROXY protocol v2 header (required from
	// them, never read from other sources).
	ProxyProtocol []netip.Prefix
}

// Enabled reports whether the encrypted listeners are configured.
func (t *TLS) Enabled() bool { return t.CertFile != "" }

// Upstream is the [upstream] section.
type Upstream struct {
	Servers  []UpstreamServer
	Strategy string
	Timeout  time.Duration
	CAFile   string
	Forward  []Forward
	// MaxInFlightPerClient and MaxInFlightPerZone are the shares of the
	// upstream queries in flight that one client (IPv6: one /64) and one
	// zone (a name's registered domain) may take; 0 is no bound.
	MaxInFlightPerClient int
	MaxInFlightPerZone   int
}

// Strategies are the valid values of upstream.strategy.
var Strategies = []string{"failover", "round_robin", "fastest", "parallel"}

// Protocols of an upstream server.
const (
	ProtoDNS   = "dns"   // plain DNS: UDP, and TCP when the answer is truncated
	ProtoTLS   = "tls"   // DNS over TLS, RFC 7858
	ProtoHTTPS = "https" // DNS over HTTPS, RFC 8484
)

// UpstreamServer is one parsed entry of upstream.servers.
type UpstreamServer struct {
	// Raw is the entry as written; it names the upstream in metrics and logs.
	Raw string
	// Proto is ProtoDNS, ProtoTLS or ProtoHTTPS.
	Proto string
	// Addr is the host:port to dial. For ProtoHTTPS it is the URL's host, or
	// the IP address written after '#'.
	Addr string
	// ServerName is the TLS server name for ProtoTLS and ProtoHTTPS.
	ServerName string
	// URL is the full URL for ProtoHTTPS, without the '#' part.
	URL string
	// TrustAD keeps the server's AD bit in answers: the entry is listed in
	// upstream.trust_ad (DoT and DoH servers only). Otherwise AD is
	// cleared, since AppFence validates nothing itself.
	TrustAD bool
}

// Forward is one [[upstream.forward]] entry: zones sent to their own servers.
type Forward struct {
	// Zones are canonical zone names (lower case, no trailing dot).
	Zones   []string
	Servers []UpstreamServer
	Line    int
}

// Cache is the [cache] section.
type Cache struct {
	Size           int
	MinTTL         time.Duration
	MaxTTL         time.Duration
	MaxNegativeTTL time.Duration
	Prefetch       bool
	ServeStale     time.Duration
}

// Block responses: the valid values of blocking.response.
const (
	ResponseNXDomain = "nxdomain"
	ResponseNoData   = "nodata"
	ResponseNull     = "null"
	ResponseRefused  = "refused"
	ResponseSinkhole = "sinkhole"
)

// Responses lists the valid values of blocking.response.
var Responses = []string{ResponseNXDomain, ResponseNoData, ResponseNull, ResponseRefused, ResponseSinkhole}

// Blocking is the [blocking] section.
type Blocking struct {
	Response       string
	SinkholeIPv4   netip.Addr
	SinkholeIPv6   netip.Addr
	TTL            time.Duration
	ExtendedErrors bool
	InspectCNAMEs  bool
	// Lists are glob patterns, made absolute against Config.Dir.
	Lists []string
	Watch bool
	// CacheDir is where downloaded remote sources are kept: absolute, and
	// DefaultCacheDir beside the config file when the file leaves it "".
	CacheDir string
	Block    []AppRef
	Monitor  []AppRef
	// MaxRuleLoss is the fraction (0..1) of its rules a blocking app may
	// lose in a reload: a reload past it keeps the running policy. 1 turns
	// the guard off.
	MaxRuleLoss float64
	// NAT64Prefixes are the NAT64 prefixes (RFC 6052 lengths 32, 40, 48,
	// 56, 64 or 96) whose IPv6 answers embed an IPv4 address that is
	// matched against the apps' ip_ranges; 6to4 (2002::/16) always is.
	NAT64Prefixes []netip.Prefix
}

// DefaultCacheDir is the folder, beside the config file, that keeps
// downloaded remote sources when blocking.cache_dir is "".
const DefaultCacheDir = ".appfence-cache"

// AppRef is a reference to an app by name, with where it was written: the
// key path ("group[1].allow[0]") and line.
type AppRef struct {
	Name string
	Key  string
	Line int
}

// DefaultGroup is the name of the implicit group of clients that match no
// [[group]]. A [[group]] with this name and no clients configures it.
const DefaultGroup = "default"

// Group is one [[group]] entry.
type Group struct {
	Name    string
	Clients []netip.Prefix
	// ClientIDs are canonical (lower case) ClientIDs of the group's
	// devices: the DoH path /dns-query/{id} or the SNI label under
	// server.tls.server_name.
	ClientIDs []string
	// ClientCerts name verified client certificates: a DNS SAN, the CN,
	// or "sha256:" and the hex SHA-256 of the certificate (lower case).
	ClientCerts []string
	// RequireCert: only a verified certificate places a client in the
	// group (Clients and ClientIDs must then be empty).
	RequireCert bool
	Allow       []AppRef
	Block       []AppRef
	// Allowlist is mode = "allowlist": only the names of the apps in Allow
	// resolve for the group.
	Allowlist bool
	Line      int
}

// ClientIDRE is the syntax of a ClientID (compared in lower case).
var ClientIDRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Metrics is the [metrics] section.
type Metrics struct {
	Listen string
	// BearerTokenFile, when set, is the absolute path of a file holding the
	// token that /metrics, /explain and /readyz?verbose require as
	// "Authorization: Bearer TOKEN"; /healthz and /readyz stay open for
	// probes. Read again at every reload.
	BearerTokenFile string
}

// Log is the [log] section.
type Log struct {
	Level            string
	Format           string
	QueryLog         string
	QueryLogScope    string
	AnonymizeClients bool
	// Dnstap is where dnstap frames go: "unix:/path" or "tcp:host:port";
	// "" is off.
	Dnstap string
	// DnstapIdentity and DnstapVersion are the identity and version fields
	// of the dnstap messages; "" is the host name and "appfence VERSION".
	DnstapIdentity string
	DnstapVersion  string
}
