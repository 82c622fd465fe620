package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/appfence/appfence/internal/tomlpos"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the text of the built-in configuration.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the built-in configuration, with relative paths resolved
// against the working directory.
func Default() *Config {
	cfg, err := Parse(BuiltinName, nil, "")
	if err != nil {
		panic("config: built-in default is invalid: " + err.Error())
	}
	return cfg
}

// Load reads and validates the configuration file at path. Relative paths in
// it are resolved against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return Parse(path, data, filepath.Dir(abs))
}

// Parse validates data, the text of a config file named file, on top of the
// built-in defaults. dir is the directory relative paths are resolved
// against ("" = the working directory). The error, if any, lists every
// problem found, one per line, each with file:line.
func Parse(file string, data []byte, dir string) (*Config, error) {
	var raw rawConfig
	if _, err := toml.Decode(string(defaultTOML), &raw); err != nil {
		return nil, fmt.Errorf("config: built-in default: %w", err)
	}
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dir = wd
	}
	v := &validator{file: file, dir: dir}
	if data != nil {
		var err error
		if v.pos, v.errs, err = tomlpos.Decode(file, data, &raw); err != nil {
			return nil, err
		}
	}
	cfg := v.config(&raw)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return cfg, nil
}

// rawConfig mirrors the TOML schema; validator.config turns it into Config.
type rawConfig struct {
	Server struct {
		Listen            []string `toml:"listen"`
		AllowClients      []string `toml:"allow_clients"`
		RateLimit         int      `toml:"rate_limit"`
		TCPIdleTimeout    string   `toml:"tcp_idle_timeout"`
		MaxTCPConnections int      `toml:"max_tcp_connections"`
		UDPSockets        int      `toml:"udp_sockets"`
		TLS               struct {
			CertFile      string   `toml:"cert_file"`
			KeyFile       string   `toml:"key_file"`
			ServerName    string   `toml:"server_name"`
			DoTListen     []string `toml:"dot_listen"`
			DoHListen     []string `toml:"doh_listen"`
			DoQListen     []string `toml:"doq_listen"`
			ClientCAFile  string   `toml:"client_ca_file"`
			ProxyProtocol []string `toml:"proxy_protocol"`
		} `toml:"tls"`
		MaxTCPPerClient int     `toml:"max_tcp_connections_per_client"`
		MaxTCPQueries   int     `toml:"max_tcp_queries_per_connection"`
		Identity        *string `toml:"identity"` // nil: the host name
		Version         string  `toml:"version"`
	} `toml:"server"`
	Upstream struct {
		Servers  []string `toml:"servers"`
		Strategy string   `toml:"strategy"`
		Timeout  string   `toml:"timeout"`
		CAFile   string   `toml:"ca_file"`
		TrustAD  []string `toml:"trust_ad"`
		Forward  []struct {
			Zones   []string `toml:"zones"`
			Servers []string `toml:"servers"`
		} `toml:"forward"`
		MaxInFlightPerClient int `toml:"max_in_flight_per_client"`
		MaxInFlightPerZone   int `toml:"max_in_flight_per_zone"`
	} `toml:"upstream"`
	Cache struct {
		Size           int    `toml:"size"`
		MinTTL         string `toml:"min_ttl"`
		MaxTTL         string `toml:"max_ttl"`
		MaxNegativeTTL string `toml:"max_negative_ttl"`
		Prefetch       bool   `toml:"prefetch"`
		ServeStale     string `toml:"serve_stale"`
	} `toml:"cache"`
	Blocking struct {
		Response       string   `toml:"response"`
		SinkholeIPv4   string   `toml:"sinkhole_ipv4"`
		SinkholeIPv6   string   `toml:"sinkhole_ipv6"`
		TTL            string   `toml:"ttl"`
		ExtendedErrors bool     `toml:"extended_errors"`
		InspectCNAMEs  bool     `toml:"inspect_cnames"`
		Lists          []string `toml:"lists"`
		Watch          bool     `toml:"watch"`
		CacheDir       string   `toml:"cache_dir"`
		Block          []string `toml:"block"`
		Monitor        []string `toml:"monitor"`
		MaxRuleLoss    float64  `toml:"max_rule_loss"`
		NAT64Prefixes  []string `toml:"nat64_prefixes"`
	} `toml:"blocking"`
	Groups []struct {
		Name        string   `toml:"name"`
		Clients     []string `toml:"clients"`
		ClientIDs   []string `toml:"client_ids"`
		ClientCerts []string `toml:"client_certs"`
		RequireCert bool     `toml:"require_cert"`
		Allow       []string `toml:"allow"`
		Block       []string `toml:"block"`
		Mode        string   `toml:"mode"`
	} `toml:"group"`
	Metrics struct {
		Listen          string `toml:"listen"`
		BearerTokenFile string `toml:"bearer_token_file"`
	} `toml:"metrics"`
	Log struct {
		Level            string `toml:"level"`
		Format           string `toml:"format"`
		QueryLog         string `toml:"query_log"`
		QueryLogScope    string `toml:"query_log_scope"`
		AnonymizeClients bool   `toml:"anonymize_clients"`
		Dnstap           string `toml:"dnstap"`
		DnstapIdentity   string `toml:"dnstap_identity"`
		DnstapVersion    string `toml:"dnstap_version"`
	} `toml:"log"`
}
