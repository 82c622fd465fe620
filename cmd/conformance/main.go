// Command conformance runs ISC's DNS compliance tests (genreport, from
// ../shared/tools/genreport) against AppFence on loopback: an AppFence
// binary forwarding to a signed test zone (package testzone) that this
// command serves, and genreport asking AppFence about that zone in
// recursive mode. It prints every test's result and exits non-zero when a
// test fails that is not one of the documented exceptions (exceptions.go,
// docs/conformance.md), or when an exception starts to pass. With
// -unbound it runs the same tests against Unbound forwarding to the same
// zone and prints the two side by side.
//
//	go run ./cmd/conformance -appfence bin/appfence -genreport PATH [-unbound /usr/sbin/unbound]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/appfence/appfence/internal/synthetic"
	"github.com/appfence/appfence/internal/testzone"
)

// zoneName is the test zone genreport asks about.
const zoneName = "gr.test"

func main() {
	appfenceBin := flag.String("appfence", "bin/appfence", "the AppFence binary to test")
	genreport := flag.String("genreport", "genreport", "the genreport binary (../shared/tools/genreport/build.sh builds it)")
	unbound := flag.String("unbound", "", "also run the tests against this Unbound binary, forwarding to the same zone, and print both")
	verbose := flag.Bool("v", false, "print genreport's raw output and the servers' logs")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zone, err := testzone.Start(zoneName)
	if err != nil {
		log.Error("conformance", "err", err)
		os.Exit(1)
	}
	defer zone.Close()
	report, err := run(ctx, *appfenceBin, *genreport, zone.Addr, *verbose)
	if err != nil {
		log.Error("conformance", "err", err)
		os.Exit(1)
	}
	var beside *Report
	if *unbound != "" {
		if beside, err = runUnbound(ctx, *unbound, *genreport, zone.Addr, *verbose); err != nil {
			log.Error("conformance: unbound", "err", err)
			os.Exit(1)
		}
	}
	fmt.Print(report.Table(beside))
	if err := report.Check(Exceptions); err != nil {
		log.Error("conformance", "err", err)
		os.Exit(1)
	}
}

// run starts AppFence forwarding to the zone at upstream and runs
// genreport's tests against it.
func run(ctx context.Context, appfenceBin, genreport, upstream string, verbose bool) (*Report, error) {
	dir, err := os.MkdirTemp("", "appfence-conformance")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := startAppfence(ctx, appfenceBin, dir, upstream)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	report, err := runGenreport(ctx, genreport, srv.dnsAddr, verbose)
	if verbose {
		fmt.Fprintf(os.Stderr, "appfence log:\n%s\n", srv.log.String())
	}
	return report, err
}

// runGenreport runs genreport's protocol tests (-c common, -f full incl.
// EDNS, and the TSIG test dnswkk), then its type tests (-t), in recursive
// mode against the resolver at addr, as ../shared/tools/genreport's README
// shows them.
func runGenreport(ctx context.Context, genreport, addr string, verbose bool) (*Report, error) {
	_, port, _ := net.SplitHostPort(addr)
	report := &Report{}
	for _, args := range [][]string{
		{"-R", "-i", "dnswkk", "-f", "-c", "-P", port},
		{"-R", "-t", "-P", port},
	} {
		cmd := exec.CommandContext(ctx, genreport, args...)
		cmd.Stdin = strings.NewReader(zoneName + " ns1." + zoneName + " 127.0.0.1\n")
		out, err := cmd.CombinedOutput()
		if verbose {
			fmt.Fprintf(os.Stderr, "genreport %s:\n%s\n", strings.Join(args, " "), out)
		}
		if err != nil {
			return nil, fmt.Errorf("genreport %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		if err := report.Parse(out); err != nil {
			return nil, fmt.Errorf("genreport %s: %w", strings.Join(args, " "), err)
		}
	}
	return report, nil
}

// server is the AppFence process under test.
type server struct {
	cmd     *exec.Cmd
	dnsAddr string
	log     *bytes.Buffer
	exited  chan struct{}
}

// startAppfence writes a configuration forwarding to upstream and starts
// AppFence on a free loopback port, returning once it answers /readyz.
func startAppfence(ctx context.Context, bin, dir, upstream string) (*server, error) {
	dnsAddr, err := synthetic.FreeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := synthetic.FreeAddr()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`# appfence conformance run
[server]
listen = [%q]
allow_clients = ["127.0.0.0/8"]

[upstream]
servers = [%q]
timeout = "1s"

[blocking]
lists = []
watch = false

[metrics]
listen = %q
`, dnsAddr, upstream, metricsAddr)
	path := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	s := &server{dnsAddr: dnsAddr, log: &bytes.Buffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "-config", path)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	for {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("appfence exited at start:\n%s", s.log)
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("appfence not ready: %w\n%s", ctx.Err(), s.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Report is genreport's verdict per test: "ok" or the tags saying what
// went wrong.
type Report struct {
	Results map[string]string
}

// Parse reads genreport's output lines, "zone. @addr (ns.): test=tags
// test=tags ...", into r.
func (r *Report) Parse(out []byte) error {
	if r.Results == nil {
		r.Results = make(map[string]string)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		_, rest, ok := strings.Cut(line, "):")
		if !ok {
			continue
		}
		for _, field := range strings.Fields(rest) {
			name, tags, ok := strings.Cut(field, "=")
			if !ok {
				continue
			}
			r.Results[name] = tags
			n++
		}
	}
	if n == 0 {
		return errors.New("no test results in the output:\n" + string(out))
	}
	return nil
}

// Passed reports whether the test's tags include "ok".
func (r *Report) Passed(test string) bool {
	for _, tag := range strings.Split(r.Results[test], ",") {
		if tag == "ok" {
			return true
		}
	}
	return false
}

// Check returns an error naming each test that failed without being an
// exception, and each exception that passed (the list would be stale).
func (r *Report) Check(exceptions map[string]Exception) error {
	var problems []string
	for _, test := range r.tests() {
		_, excepted := exceptions[test]
		switch {
		case !r.Passed(test) && !excepted:
			problems = append(problems, fmt.Sprintf("%s=%s fails", test, r.Results[test]))
		case r.Passed(test) && excepted:
			problems = append(problems, fmt.Sprintf("%s passes but is listed as an exception", test))
		}
	}
	for test := range exceptions {
		if _, ran := r.Results[test]; !ran {
			problems = append(problems, fmt.Sprintf("exception %s did not run", test))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Table is the report as text, one test per line, exceptions marked,
// with another resolver's result beside each when beside is not nil.
func (r *Report) Table(beside *Report) string {
	var b strings.Builder
	if beside != nil {
		fmt.Fprintf(&b, "%-12s %-20s %s\n", "test", "appfence", "unbound")
	}
	for _, test := range r.tests() {
		fmt.Fprintf(&b, "%-12s %-20s", test, r.Results[test])
		if beside != nil {
			fmt.Fprintf(&b, " %-20s", beside.Results[test])
		}
		if e, ok := Exceptions[test]; ok {
			fmt.Fprintf(&b, " (exception: %s)", e.Reason)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Report) tests() []string {
	tests := make([]string, 0, len(r.Results))
	for t := range r.Results {
		tests = append(tests, t)
	}
	sort.Strings(tests)
	return tests
}
