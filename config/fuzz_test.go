package config

import (
	"bytes"
	"errors"
	"testing"

	"github.com/appfence/appfence/internal/tomlpos"
)

// FuzzParse checks that any text either parses into a config that keeps the
// validation's promises, or is rejected with errors that each name the file
// and a line within it (0 when the problem has none).
func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	f.Add([]byte(full))
	for _, s := range []string{
		"[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = 1\n",
		"[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nallow = [\"x\"]\nblock = [\"x\"]\n",
		"[upstream]\nservers = [\"tls://[::1]:853#dns.test\", \"https://dns.test/q#192.0.2.1\"]\ntimeout = \"1ms\"\n",
		"[[upstream.forward]]\nzones = [\"a..b\", \".\"]\nservers = [\"10.0.0.53\"]\n",
		"[blocking]\nresponse = \"sinkhole\"\nsinkhole_ipv6 = \"::ffff:1.2.3.4\"\nttl = \"-1s\"\n",
		"[cache]\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n[log]\nlevel = 3\n",
		"a = \"\\u0000\"\n[server\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data, dir)
		if err != nil {
			lines := bytes.Count(data, []byte("\n")) + 1
			for _, e := range unjoin(err) {
				var te *tomlpos.Error
				if !errors.As(e, &te) || te.File != "fuzz.toml" || te.Line < 0 || te.Line > lines {
					t.Fatalf("error %q does not name fuzz.toml and a line in 1..%d", e, lines)
				}
			}
			return
		}
		s := cfg.Server
		switch {
		case len(s.Listen) == 0, len(s.AllowClients) == 0, s.RateLimit < 0, s.MaxTCPConnections < 1, s.TCPIdleTimeout < 0:
			t.Fatalf("accepted [server] %+v", s)
		case len(cfg.Upstream.Servers) == 0, cfg.Upstream.Timeout <= 0:
			t.Fatalf("accepted [upstream] %+v", cfg.Upstream)
		case cfg.Cache.Size < 0, cfg.Cache.MinTTL > cfg.Cache.MaxTTL:
			t.Fatalf("accepted [cache] %+v", cfg.Cache)
		}
		for _, p := range s.AllowClients {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("accepted allow_clients prefix %v", p)
			}
		}
		for _, g := range cfg.Groups {
			if g.Name == "" || g.Name != DefaultGroup && len(g.Clients) == 0 {
				t.Fatalf("accepted group %+v", g)
			}
		}
	})
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
