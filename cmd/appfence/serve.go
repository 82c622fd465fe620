package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/appfence/appfence/internal/daemon"
)

// shutdownGrace bounds how long serve waits for queries in flight at exit.
const shutdownGrace = 10 * time.Second

// serve is `appfence serve`: its flags and signals around internal/daemon.
// It runs until ctx is done (SIGINT, SIGTERM) or a listener fails.
func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var sd notifier
	// The daemon's lifetime is not ctx, whose end (a signal) starts the
	// shutdown, but the end of the shutdown's grace.
	d, err := daemon.New(context.WithoutCancel(ctx), *cfgPath, daemon.Options{
		Version: buildVersion(), Stderr: stderr,
		Reloading: func() { sd.reloading() }, Reloaded: func(err error) { sd.reloaded(err) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "appfence: %v\n", err)
		return 1
	}
	log := d.Logger()
	sd.log = log
	// Every socket is bound and the policy loaded: systemd may start the
	// units ordered after this one (nss-lookup.target).
	sd.ready("serving")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go sd.watchdog(ctx, d.Ready)

	hup, usr1 := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(hup)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.Reload("SIGHUP")
			case <-usr1:
				d.ReopenQueryLog()
			}
		}
	}()
	code := 0
	if err := d.Run(ctx); err != nil {
		log.Error("serve", "err", err)
		code = 1
	}
	sd.stopping()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer scancel()
	if err := d.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return code
}
