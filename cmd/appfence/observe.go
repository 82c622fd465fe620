package main

import (
	"errors"

	"github.com/appfence/appfence/querylog"
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

// upstreamHealth is an upstream router that knows whether a server of its
// default pool is up (upstream.Router.Up, from the health checks).
type upstreamHealth interface{ Up() bool }

// upstreamReady fails when every server of the default upstream pool is
// down. A router without health tracking counts as up.
func upstreamReady(router any) error {
	if h, ok := router.(upstreamHealth); ok && !h.Up() {
		return errors.New("every upstream server of the default pool is down")
	}
	return nil
}
