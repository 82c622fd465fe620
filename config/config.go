// Package config owns the AppFence configuration file: its schema, the
// built-in defaults (default.toml, embedded) and validation. Load returns a
// Config whose values are typed and checked; every error names the file, the
// line and the key.
//
// Whether an app name refers to a defined app is checked later, when the
// policy is built from the config and the app definitions; AppRef keeps the
// position for that error.
package config

import (
	"net/netip"
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
	// MaxTCPConnectionsPerClient bounds the TCP connections of one client
	// address (IPv6: one /64).
	MaxTCPConnectionsPerClient int
}

// Upstream is the [upstream] section.
type Upstream struct {
	Servers  []UpstreamServer
	Strategy string
	Timeout  time.Duration
	CAFile   string
	Forward  []Forward
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
	Allow   []AppRef
	Block   []AppRef
	Line    int
}

// Metrics is the [metrics] section.
type Metrics struct {
	Listen string
}

// Log is the [log] section.
type Log struct {
	Level            string
	Format           string
	QueryLog         string
	QueryLogScope    string
	AnonymizeClients bool
}
