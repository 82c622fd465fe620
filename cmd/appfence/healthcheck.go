package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/policy"
)

// healthcheck is `appfence healthcheck`: the probe of a container's
// HEALTHCHECK (a scratch image has no curl or dig). It asks a running
// AppFence on loopback for /readyz and sends a DNS message to its first
// listener, and exits 0 when both answer, 1 when not, 2 for bad flags.
// -url and -dns check only what they name.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file of the instance (default: the built-in configuration)")
	url := fs.String("url", "", "check only this URL, which must answer 200 (e.g. http://127.0.0.1:9153/readyz)")
	dnsAddr := fs.String("dns", "", "check only that this DNS address answers over UDP (e.g. 127.0.0.1:5053)")
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for each check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "appfence healthcheck: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *url == "" && *dnsAddr == "" {
		cfg, err := policy.LoadConfig(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "appfence healthcheck: %v\n", err)
			return 1
		}
		if l := cfg.Metrics.Listen; l != "" {
			*url = "http://" + loopback(l) + "/readyz"
		}
		*dnsAddr = loopback(cfg.Server.Listen[0])
	}
	var checks []func(context.Context) error
	if *url != "" {
		checks = append(checks, func(ctx context.Context) error { return probeHTTP(ctx, *url) })
	}
	if *dnsAddr != "" {
		checks = append(checks, func(ctx context.Context) error { return probeDNS(ctx, *dnsAddr) })
	}
	for _, check := range checks {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		err := check(cctx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "appfence healthcheck: %v\n", err)
			return 1
		}
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// loopback turns a listen address into one to connect to on this host: a
// wildcard or empty host becomes the loopback address of its family.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// probeHTTP checks that GET url answers 200.
func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %q", url, resp.Status, body)
	}
	return nil
}

// probeDNS checks that addr answers a DNS message over UDP. The message
// has the STATUS opcode, which AppFence answers NOTIMP at once: the check
// needs no upstream and changes nothing. Any answer to it counts, REFUSED
// included (loopback may be outside server.allow_clients).
func probeDNS(ctx context.Context, addr string) error {
	m := new(dns.Msg)
	m.SetQuestion(".", dns.TypeNS)
	m.Opcode = dns.OpcodeStatus
	c := &dns.Client{Net: "udp"}
	if dl, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(dl)
	}
	resp, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return fmt.Errorf("dns %s: %w", addr, err)
	}
	if resp.Id != m.Id || !resp.Response {
		return errors.New("dns " + addr + ": not an answer to the query")
	}
	return nil
}
