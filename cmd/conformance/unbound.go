package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/appfence/appfence/internal/synthetic"
	"github.com/appfence/appfence/internal/unbound"
)

// runUnbound runs genreport against Unbound forwarding to the zone at
// upstream, the reference beside AppFence's results.
func runUnbound(ctx context.Context, bin, genreport, upstream string, verbose bool) (*Report, error) {
	dir, err := os.MkdirTemp("", "unbound-conformance")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	addr, err := synthetic.FreeAddr()
	if err != nil {
		return nil, err
	}
	cfg := unbound.ForwarderConfig(dir, addr, upstream, "")
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-d", "-c", path)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := waitTCP(ctx, addr); err != nil {
		return nil, fmt.Errorf("unbound: %w\n%s", err, log.String())
	}
	return runGenreport(ctx, genreport, addr, verbose)
}

// waitTCP waits until something accepts TCP connections at addr.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
