package reload

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/appfence/appfence/resolver/policy"
)

// BenchmarkReload reloads a policy with the three large public lists of
// the shared test data (about 410,000 rules). "compile" is the reference:
// loading and compiling alone; "reload" adds what the Reloader does on
// top (hashing every rule for the change log, the diff, the metrics).
func BenchmarkReload(b *testing.B) {
	data := os.Getenv("APPFENCE_TESTDATA")
	if data == "" {
		data = "/work/shared/data"
	}
	lists := filepath.Join(data, "lists")
	if _, err := os.Stat(lists); err != nil {
		b.Skipf("test data not present (set APPFENCE_TESTDATA): %v", err)
	}
	dir := b.TempDir()
	apps := `[[app]]
name = "phishing"
sources = [{ file = "` + filepath.Join(lists, "blocklistproject-phishing-nl.txt.gz") + `", format = "domains" }]
[[app]]
name = "basic"
sources = [{ file = "` + filepath.Join(lists, "blocklistproject-basic.txt.gz") + `", format = "hosts" }]
[[app]]
name = "tracking"
sources = [{ file = "` + filepath.Join(lists, "blocklistproject-tracking-ags.txt.gz") + `", format = "adblock" }]
`
	os.WriteFile(filepath.Join(dir, "apps.toml"), []byte(apps), 0o644)
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte("[blocking]\nlists = [\"apps.toml\"]\nblock = [\"phishing\", \"basic\", \"tracking\"]\n"), 0o644)

	b.Run("compile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := build(cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reload", func(b *testing.B) {
		r := New(Options{Path: cfg, Install: func(*policy.Policy) error { return nil }})
		if _, err := r.Load(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Reload("bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
