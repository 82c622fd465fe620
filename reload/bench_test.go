package reload

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/listgen"
	"github.com/appfence/appfence/internal/memtest"

	"github.com/appfence/appfence/policy"
)

// BenchmarkReload reloads a policy with the three large public lists of
// the shared test data (about 410,000 rules). "compile" is the reference:
// loading and compiling alone; "reload" adds what the Reloader does on
// top (hashing every rule for the change log, the diff, the metrics).
func BenchmarkReload(b *testing.B) {
	data := os.Getenv("APPFENCE_TESTDATA")
	if data == "" {
		data = filepath.Join("..", "..", "shared", "data")
	}
	// Absolute: apps.toml, in a temporary folder, names the lists, and a
	// relative path there is relative to that folder.
	lists, err := filepath.Abs(filepath.Join(data, "lists"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(lists); err != nil {
		b.Fatalf("test data not present (../shared/data beside the repository, or set APPFENCE_TESTDATA): %v", err)
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

// BenchmarkReload1M reloads a policy whose one app imports 1,000,000
// names (a listgen list, domains format). Besides the time, it reports the
// heap: steady-MB is the live heap with the policy serving, install-MB the
// live heap when the new policy is handed to Install (the serving one and
// the new one, the most a reload keeps reachable), and peak-MB the most
// heap in use during the reload, the garbage of the build included. The
// live heaps are measured after a full collection, outside the timed part.
func BenchmarkReload1M(b *testing.B) {
	dir := b.TempDir()
	if err := listgen.WriteFile(filepath.Join(dir, "big.txt"), listgen.FormatDomains, listgen.Names(1, 1_000_000)); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "apps.toml"), []byte("[[app]]\nname = \"big\"\nsources = [{ file = \"big.txt\", format = \"domains\" }]\n"), 0o644)
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte("[blocking]\nlists = [\"apps.toml\"]\nblock = [\"big\"]\n"), 0o644)
	var install, peak float64
	r := New(Options{Path: cfg, Install: func(*policy.Policy) error {
		b.StopTimer()
		install = max(install, float64(memtest.Live()))
		b.StartTimer()
		return nil
	}})
	if _, err := r.Load(); err != nil {
		b.Fatal(err)
	}
	steady := float64(memtest.Live())
	install = 0
	b.ResetTimer()
	for b.Loop() {
		var err error
		peak = max(peak, float64(memtest.Peak(time.Millisecond, func() { err = r.Reload("bench") })))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	steady = (steady + float64(memtest.Live())) / 2
	runtime.KeepAlive(r) // serving until here
	b.ReportMetric(steady/1e6, "steady-MB")
	b.ReportMetric(install/1e6, "install-MB")
	b.ReportMetric(peak/1e6, "peak-MB")
}
