package main

import (
	"errors"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
	"github.com/appfence/appfence/resolver/upstream"
)

// setQueryLog starts writing the query log to path ("" is off) when it
// differs from the destination in use, and closes the previous one. A file
// that cannot be opened is no reason to stop answering: the error is
// logged and counted (appfence_querylog_open_errors_total,
// appfence_querylog_ok 0), queries are answered without a query log (at
// start) or with the previous one (on reload), and the next reload or
// SIGUSR1 tries again.
func (d *daemon) setQueryLog(path string) {
	d.obsMu.Lock()
	defer d.obsMu.Unlock()
	d.openQueryLog(path)
}

// openQueryLog is setQueryLog with obsMu held.
func (d *daemon) openQueryLog(path string) {
	d.queryLogPath = path
	if d.querylog == nil && path == "" || d.querylog != nil && d.querylog.Path() == path {
		d.metrics.QueryLogOK.Set(1)
		return
	}
	var ql *querylog.Logger
	if path != "" {
		var err error
		ql, err = querylog.Open(path, querylog.Options{Dropped: d.metrics.QueryLogDropped, Log: d.log})
		if err != nil {
			d.metrics.QueryLogErrors.Inc()
			d.metrics.QueryLogOK.Set(0)
			if d.querylog != nil {
				d.log.Error("query log: cannot open the new file; queries are answered and logged to the previous one",
					"path", path, "previous", d.querylog.Path(), "err", err)
			} else {
				d.log.Error("query log: cannot open the file; queries are answered without a query log until a reload or SIGUSR1 opens it",
					"path", path, "err", err)
			}
			return
		}
		d.log.Info("query log", "path", path)
	}
	d.metrics.QueryLogOK.Set(1)
	if old := d.handler.SetQueryLog(ql); old != nil {
		old.Close()
	}
	d.querylog = ql
}

// reopenQueryLog reopens the query log file after logrotate moved it (on
// SIGUSR1), or tries again to open one that could not be opened.
func (d *daemon) reopenQueryLog() {
	d.obsMu.Lock()
	defer d.obsMu.Unlock()
	if want := d.queryLogPath; want != "" && (d.querylog == nil || d.querylog.Path() != want) {
		d.openQueryLog(want)
		if d.querylog == nil || d.querylog.Path() == want {
			return // opened now, or still none to reopen
		}
	}
	if d.querylog == nil {
		return
	}
	if err := d.querylog.Reopen(); err != nil {
		d.metrics.QueryLogErrors.Inc()
		d.log.Error("reopen query log: writing on to the previous file", "err", err)
		return
	}
	d.log.Info("query log reopened", "path", d.querylog.Path())
}

// dnstapSettings are the [log] keys of dnstap.
type dnstapSettings struct{ target, identity, version string }

// setDnstap starts sending dnstap messages as l says when its settings
// differ from those in use, and closes the previous writer (in the
// background on reloads: closing waits for the collector up to the write
// timeout). The writer connects in the background, so a collector that is
// down is no error.
func (d *daemon) setDnstap(l config.Log) {
	d.obsMu.Lock()
	defer d.obsMu.Unlock()
	s := dnstapSettings{l.Dnstap, l.DnstapIdentity, l.DnstapVersion}
	if s.version == "" {
		s.version = "appfence " + buildVersion()
	}
	if s == d.dnstapSettings && (d.dnstap != nil) == (s.target != "") {
		return
	}
	var dt *dnstap.Writer
	if s.target != "" {
		var err error
		dt, err = dnstap.New(s.target, dnstap.Options{
			Identity:  s.identity,
			Version:   s.version,
			Dropped:   d.metrics.DnstapDropped,
			Sent:      d.metrics.DnstapSent,
			Connected: d.metrics.DnstapConnected,
			Log:       d.log,
		})
		if err != nil { // the configuration was validated: cannot happen
			d.log.Error("dnstap", "err", err)
			return
		}
		d.log.Info("dnstap", "target", dt.Target())
	}
	d.dnstapSettings = s
	if old := d.handler.SetDnstap(dt); old != nil {
		go old.Close()
	}
	d.dnstap = dt
}

// closeObservers closes the query log and the dnstap writer at exit, after
// the queries in flight are answered: what they queued is written.
func (d *daemon) closeObservers() {
	d.obsMu.Lock()
	defer d.obsMu.Unlock()
	if d.handler == nil {
		return
	}
	if old := d.handler.SetQueryLog(nil); old != nil {
		old.Close()
	}
	if old := d.handler.SetDnstap(nil); old != nil {
		old.Close()
	}
}

// upstreamReady fails when every server of the default upstream pool is
// marked down by the health checks.
func upstreamReady(r *upstream.Router) error {
	if !r.Up() {
		return errors.New("every upstream server of the default pool is down")
	}
	return nil
}
