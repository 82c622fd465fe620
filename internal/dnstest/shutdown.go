package dnstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ServfailAtShutdown checks that a query waiting for an upstream that never
// answers ends with SERVFAIL when a shutdown's grace ends: it waits until
// up was asked, calls shutdown with a grace of 100ms (which must report
// the grace exceeded), and then wants the reply from replies within 3 s,
// well before any upstream timeout. ask sends the query and returns its
// reply; it runs in a goroutine of its own.
func ServfailAtShutdown(t testing.TB, up *Upstream, shutdown func(context.Context) error, ask func() (*dns.Msg, error)) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		resp, err := ask()
		switch {
		case err != nil:
			err = fmt.Errorf("no reply: %w", err)
		case resp.Rcode != dns.RcodeServerFailure:
			err = fmt.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
		}
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); up.Total() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream was never asked")
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown = %v, want the grace exceeded", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("answered %v after the shutdown began, want well under the upstream timeout", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query still waits 10 s after the shutdown began")
	}
}
