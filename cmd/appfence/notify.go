package main

import (
	"context"
	"log/slog"
	"time"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells systemd (Type=notify) the state of the service through
// $NOTIFY_SOCKET: READY=1 once the DNS sockets are bound and a policy is
// loaded, RELOADING=1 and READY=1 around each reload, STOPPING=1 at
// shutdown, and WATCHDOG=1 pings when the unit sets WatchdogSec. Without
// $NOTIFY_SOCKET (not started by systemd) it does nothing.
type notifier struct {
	log *slog.Logger
}

// send sends one notification; a failure is logged, never fatal.
func (n notifier) send(state string) {
	if _, err := sdaemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify", "state", state, "err", err)
	}
}

// ready reports the service started, or done reloading.
func (n notifier) ready(status string) {
	n.send(sdaemon.SdNotifyReady + "\nSTATUS=" + status)
}

// reloading reports a reload begins, with the time systemd needs to tell
// it from an earlier one.
func (n notifier) reloading() {
	n.send(sdaemon.SdNotifyReloading + "\n" + sdaemon.SdNotifyMonotonicUsec())
}

// reloaded reports a reload ended: the service is ready again either way,
// since a failed reload leaves the previous policy serving.
func (n notifier) reloaded(err error) {
	status := "serving; the last reload worked"
	if err != nil {
		status = "serving the previous policy: the last reload failed (see the log)"
	}
	n.ready(status)
}

// stopping reports the shutdown began.
func (n notifier) stopping() { n.send(sdaemon.SdNotifyStopping) }

// watchdog pings systemd at half the unit's WatchdogSec until ctx is done,
// while alive reports no error; when alive fails, it stops pinging and
// systemd restarts the service once the watchdog time is over. Without a
// watchdog it returns at once.
func (n notifier) watchdog(ctx context.Context, alive func() error) {
	interval, err := sdaemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("sd_notify watchdog", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		if err := alive(); err != nil {
			n.log.Error("watchdog: not alive, no ping to systemd", "err", err)
		} else {
			n.send(sdaemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
