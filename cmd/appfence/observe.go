package main

import (
	"errors"

	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/resolver/upstream"
)

// setQueryLog starts writing the query log to path ("" is off) when it
// differs from the destination in use, and closes the previous one.
func (d *daemon) setQueryLog(path string) error {
	if d.querylog == nil && path == "" || d.querylog != nil && d.querylog.Path() == path {
		return nil
	}
	var ql *querylog.Logger
	if path != "" {
		var err error
		ql, err = querylog.Open(path, querylog.Options{Dropped: d.metrics.QueryLogDropped, Log: d.log})
		if err != nil {
			return err
		}
		d.log.Info("query log", "path", path)
	}
	if old := d.handler.SetQueryLog(ql); old != nil {
		old.Close()
	}
	d.querylog = ql
	return nil
}

// reopenQueryLog reopens the query log file after logrotate moved it.
func (d *daemon) reopenQueryLog() {
	if d.querylog == nil {
		return
	}
	if err := d.querylog.Reopen(); err != nil {
		d.log.Error("reopen query log", "err", err)
		return
	}
	d.log.Info("query log reopened", "path", d.querylog.Path())
}

// upstreamReady fails when every server of the default upstream pool is
// marked down by the health checks.
func upstreamReady(r *upstream.Router) error {
	if !r.Up() {
		return errors.New("every upstream server of the default pool is down")
	}
	return nil
}
