package reload

import (
	"hash/maphash"
	"io"
	"os"
	"slices"

	"github.com/appfence/appfence/policy"
)

// fingerprint hashes what the policy p was built from: the contents of the
// configuration file at path ("" is the built-in one), of every local file
// the policy read (app definitions and lists), of the files Install reads
// (certificates, CA bundles, the bearer token), and the rules of each app,
// which cover the remote sources. Two reloads with the same fingerprint
// serve the same policy: the second changed nothing.
func fingerprint(path string, p *policy.Policy, d digest, seed maphash.Seed) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	c := p.Config
	files := append([]string{path}, p.Set.Files...)
	files = append(files, c.Upstream.CAFile, c.Server.TLS.CertFile, c.Server.TLS.KeyFile,
		c.Server.TLS.ClientCAFile, c.Metrics.BearerTokenFile)
	for _, name := range files {
		h.WriteString(name)
		h.WriteByte(0)
		if name == "" {
			continue
		}
		if f, err := os.Open(name); err != nil {
			h.WriteString(err.Error())
		} else {
			n, err := io.Copy(&h, f)
			f.Close()
			maphash.WriteComparable(&h, n)
			if err != nil {
				h.WriteString(err.Error())
			}
		}
		h.WriteByte(0)
	}
	apps := make([]string, 0, len(d))
	for app := range d {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		h.WriteString(app)
		h.WriteByte(0)
		maphash.WriteComparable(&h, len(d[app]))
		for _, r := range d[app] {
			maphash.WriteComparable(&h, r)
		}
	}
	return h.Sum64()
}
