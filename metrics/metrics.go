// Package metrics owns AppFence's Prometheus registry and the collectors
// that several packages count on (queries, reloads, the query log,
// dnstap, the encrypted transports); the cache's and the upstreams' are
// declared next to their code (resolver/cache, resolver/upstream) and
// registered on this registry, and package httpapi exports it. Collectors
// are created on a registry made by New (there is no package-level state)
// and only observe: nothing in the resolver reads them back to make a
// decision.
//
// It imports only the Prometheus client: it takes no AppFence type, so
// every package may import it.
//
// Labels stay bounded: group and app values come from the configuration,
// upstream values from upstream.servers, never from client addresses or
// query names.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "appfence"

// Metrics holds the collectors of the SPEC's metrics table but those of
// the cache and the upstreams (declared next to their code, in
// resolver/cache and resolver/upstream), and
// appfence_querylog_dropped_total. The per-query collectors (Queries,
// AppQueries, Responses, QueryDuration) are counted by the resolver, which
// resolves their series once per policy.
type Metrics struct {
	Registry *prometheus.Registry

	Queries         *prometheus.CounterVec   // group, action
	AppQueries      *prometheus.CounterVec   // group, app, action
	Responses       *prometheus.CounterVec   // group, rcode
	QueryDuration   *prometheus.HistogramVec // group
	BlocklistRules  *prometheus.GaugeVec     // app
	Reloads         *prometheus.CounterVec   // result
	LastReloadOK    prometheus.Gauge
	LastReloadTime  prometheus.Gauge
	BuildInfo       *prometheus.GaugeVec // version, goversion
	QueryLogDropped prometheus.Counter

	// UpstreamShed counts the queries refused an upstream query because
	// their client or zone had its share in flight (upstream.max_in_flight_per_*).
	UpstreamShed *prometheus.CounterVec // reason = client / zone
	// ReloadRuleLoss counts the reloads refused because a blocking app
	// would have lost more than blocking.max_rule_loss of its rules.
	ReloadRuleLoss *prometheus.CounterVec // app
	// QueryLogErrors counts the times the query log file could not be
	// opened (at start, reload or reopen); QueryLogOK is 1 while the
	// configured query log is written, 0 while it cannot be.
	QueryLogErrors prometheus.Counter
	QueryLogOK     prometheus.Gauge
	// DnstapDropped and DnstapSent count the exchanges (query and
	// response) dropped and written to the dnstap collector;
	// DnstapConnected is 1 while connected to it.
	DnstapDropped   prometheus.Counter
	DnstapSent      prometheus.Counter
	DnstapConnected prometheus.Gauge
}

// New creates the collectors on a new registry, with the Go and process
// collectors, and sets appfence_build_info for version.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	m := &Metrics{
		Registry: reg,
		Queries: f.counter("queries_total",
			"Queries answered, by client group and action (resolved, blocked, exempted, monitored, refused, dropped).",
			"group", "action"),
		AppQueries: f.counter("app_queries_total",
			"Queries for an app's names, by client group, app and action (blocked, exempted, monitored).",
			"group", "app", "action"),
		Responses: f.counter("responses_total",
			"Responses sent, by client group and response code.", "group", "rcode"),
		QueryDuration: f.histogram("query_duration_seconds",
			"Time from receiving a query to sending its answer, by client group.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "group"),
		BlocklistRules: f.gaugeVec("blocklist_rules", "Rules compiled for each app.", "app"),
		Reloads: f.counter("config_reloads_total",
			"Policy reloads, by result: success (the files changed), unchanged (they were as the serving policy's: one change is counted once however many reloads it asks for), failure.", "result"),
		LastReloadOK: f.gauge("config_last_reload_successful",
			"1 when the last reload succeeded, 0 when it failed (the previous policy keeps serving)."),
		LastReloadTime: f.gauge("config_last_reload_success_timestamp_seconds",
			"Unix time of the last successful load or reload."),
		BuildInfo: f.gaugeVec("build_info", "Build information; the value is always 1.", "version", "goversion"),
		QueryLogDropped: f.counter("querylog_dropped_total",
			"Query log lines dropped because the log writer could not keep up or could not write them.").WithLabelValues(),
		QueryLogErrors: f.counter("querylog_open_errors_total",
			"Times the query log file could not be opened (at start, reload or reopen); queries are answered without it.").WithLabelValues(),
		QueryLogOK: f.gauge("querylog_ok",
			"1 while the configured query log is written (or none is configured), 0 while its file cannot be opened."),
		DnstapDropped: f.counter("dnstap_dropped_total",
			"Queries whose dnstap messages were dropped: the collector was down, slow or stalled and the buffer full.").WithLabelValues(),
		DnstapSent: f.counter("dnstap_sent_total",
			"Queries whose dnstap messages were written to the collector.").WithLabelValues(),
		DnstapConnected: f.gauge("dnstap_connected",
			"1 while connected to the dnstap collector."),
	}
	m.UpstreamShed = f.counter("upstream_shed_total",
		"Queries answered SERVFAIL without an upstream query because their client or their zone had its share of upstream queries in flight, by reason (client, zone).",
		"reason")
	for _, r := range []string{"client", "zone"} {
		m.UpstreamShed.WithLabelValues(r)
	}
	m.ReloadRuleLoss = f.counter("config_reload_rule_loss_total",
		"Reloads refused because a blocked app would have lost more than blocking.max_rule_loss of its rules, by app.",
		"app")
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.QueryLogOK.Set(1)
	for _, r := range []string{"success", "unchanged", "failure"} {
		m.Reloads.WithLabelValues(r)
	}
	return m
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
