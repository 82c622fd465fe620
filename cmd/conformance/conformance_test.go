package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/testzone"
)

// genreportSource is ISC's genreport in the shared tools beside the
// repository.
const genreportSource = "../../../shared/tools/genreport"

// TestConformance builds AppFence and genreport and runs every genreport
// test against AppFence on loopback: only the documented exceptions may
// fail.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "appfence")
	if out, err := exec.Command("go", "build", "-o", bin, "../appfence").CombinedOutput(); err != nil {
		t.Fatalf("build appfence: %v\n%s", err, out)
	}
	build, err := filepath.Abs(filepath.Join(genreportSource, "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(build, dir).CombinedOutput(); err != nil {
		t.Fatalf("build genreport (needs gcc and libssl-dev: scripts/test-deps.sh): %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zone, err := testzone.Start(zoneName)
	if err != nil {
		t.Fatal(err)
	}
	defer zone.Close()
	report, err := run(ctx, bin, filepath.Join(dir, "genreport"), zone.Addr, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("genreport:\n%s", report.Table(nil))
	if err := report.Check(Exceptions); err != nil {
		t.Error(err)
	}
	// The run covers both groups: protocol and type tests.
	for _, test := range []string{"edns", "edns@512", "ednstcp", "do", "opcode", "dnswkk", "A", "TYPE1000"} {
		if _, ok := report.Results[test]; !ok {
			t.Errorf("genreport did not report %s", test)
		}
	}
}

// TestExceptionsDocumented: every exception is a row of the table in
// docs/conformance.md, with its reason.
func TestExceptionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	for test, e := range Exceptions {
		if !strings.Contains(string(doc), "| `"+test+"` |") {
			t.Errorf("docs/conformance.md has no row for the exception %s", test)
		}
		if e.Reason == "" {
			t.Errorf("exception %s has no reason", test)
		}
	}
}

func TestReport(t *testing.T) {
	out := []byte("gr.test. @127.0.0.1 (ns1.gr.test.): dns=ok aa=ok opcode=ra tc=formerr,nosoa signed=ok,yes\n" +
		"some other line\n")
	var r Report
	if err := r.Parse(out); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		test   string
		passed bool
	}{
		{"dns", true}, {"aa", true}, {"opcode", false}, {"tc", false}, {"signed", true}, {"absent", false},
	}
	for _, tt := range tests {
		if got := r.Passed(tt.test); got != tt.passed {
			t.Errorf("Passed(%s) = %v, want %v", tt.test, got, tt.passed)
		}
	}
	checks := []struct {
		name       string
		exceptions map[string]Exception
		wantErr    []string
	}{
		{"failures not excepted", nil, []string{"opcode=ra fails", "tc=formerr,nosoa fails"}},
		{"failures excepted", map[string]Exception{"opcode": {"r"}, "tc": {"r"}}, nil},
		{"stale exception", map[string]Exception{"opcode": {"r"}, "tc": {"r"}, "dns": {"r"}}, []string{"dns passes"}},
		{"exception not run", map[string]Exception{"opcode": {"r"}, "tc": {"r"}, "nope": {"r"}}, []string{"nope did not run"}},
	}
	for _, tt := range checks {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Check(tt.exceptions)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check: no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Check error %q does not say %q", err, want)
				}
			}
		})
	}
	if err := new(Report).Parse([]byte("nothing here\n")); err == nil {
		t.Error("Parse of output without results: no error")
	}
}
