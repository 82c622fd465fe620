package stack

import (
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
)

// setQueryLog starts writing the query log to path ("" is off) when it
// differs from the destination in use, and closes the previous one. A file
// that cannot be opened is no reason to stop answering: the error is
// logged and counted (appfence_querylog_open_errors_total,
// appfence_querylog_ok 0), queries are answered without a query log (at
// start) or with the previous one (on reload), and the next reload or
// SIGUSR1 tries again.
func (s *Stack) setQueryLog(path string) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.openQueryLog(path)
}

// openQueryLog is setQueryLog with obsMu held.
func (s *Stack) openQueryLog(path string) {
	s.queryLogPath = path
	if s.querylog == nil && path == "" || s.querylog != nil && s.querylog.Path() == path {
		s.metrics.QueryLogOK.Set(1)
		return
	}
	var ql *querylog.Logger
	if path != "" {
		var err error
		ql, err = querylog.Open(path, querylog.Options{Dropped: s.metrics.QueryLogDropped, Log: s.log})
		if err != nil {
			s.metrics.QueryLogErrors.Inc()
			s.metrics.QueryLogOK.Set(0)
			if s.querylog != nil {
				s.log.Error("query log: cannot open the new file; queries are answered and logged to the previous one",
					"path", path, "previous", s.querylog.Path(), "err", err)
			} else {
				s.log.Error("query log: cannot open the file; queries are answered without a query log until a reload or SIGUSR1 opens it",
					"path", path, "err", err)
			}
			return
		}
		s.log.Info("query log", "path", path)
	}
	s.metrics.QueryLogOK.Set(1)
	if old := s.handler.SetQueryLog(ql); old != nil {
		old.Close()
	}
	s.querylog = ql
}

// ReopenQueryLog reopens the query log file after logrotate moved it (on
// SIGUSR1), or tries again to open one that could not be opened.
func (s *Stack) ReopenQueryLog() {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	if want := s.queryLogPath; want != "" && (s.querylog == nil || s.querylog.Path() != want) {
		s.openQueryLog(want)
		if s.querylog == nil || s.querylog.Path() == want {
			return // opened now, or still none to reopen
		}
	}
	if s.querylog == nil {
		return
	}
	if err := s.querylog.Reopen(); err != nil {
		s.metrics.QueryLogErrors.Inc()
		s.log.Error("reopen query log: writing on to the previous file", "err", err)
		return
	}
	s.log.Info("query log reopened", "path", s.querylog.Path())
}

// dnstapSettings are the [log] keys of dnstap.
type dnstapSettings struct{ target, identity, version string }

// setDnstap starts sending dnstap messages as l says when its settings
// differ from those in use, and closes the previous writer (in the
// background on reloads: closing waits for the collector up to the write
// timeout). The writer connects in the background, so a collector that is
// down is no error.
func (s *Stack) setDnstap(l config.Log) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	ds := dnstapSettings{l.Dnstap, l.DnstapIdentity, l.DnstapVersion}
	if ds.version == "" {
		ds.version = "appfence " + s.version
	}
	if ds == s.dnstapSettings && (s.dnstap != nil) == (ds.target != "") {
		return
	}
	var dt *dnstap.Writer
	if ds.target != "" {
		var err error
		dt, err = dnstap.New(ds.target, dnstap.Options{
			Identity:  ds.identity,
			Version:   ds.version,
			Dropped:   s.metrics.DnstapDropped,
			Sent:      s.metrics.DnstapSent,
			Connected: s.metrics.DnstapConnected,
			Log:       s.log,
		})
		if err != nil { // the configuration was validated: cannot happen
			s.log.Error("dnstap", "err", err)
			return
		}
		s.log.Info("dnstap", "target", dt.Target())
	}
	s.dnstapSettings = ds
	if old := s.handler.SetDnstap(dt); old != nil {
		go old.Close()
	}
	s.dnstap = dt
}
