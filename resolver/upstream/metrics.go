package upstream

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/internal/promreg"
)

// collectors are the upstream servers' collectors (SPEC, Metrics: the
// names and labels are part of the contract), declared here and
// registered on the registerer NewRouter is given. The routers of
// successive reloads share them.
type collectors struct {
	requests   *prometheus.CounterVec   // upstream, rcode
	errors     *prometheus.CounterVec   // upstream, kind
	duration   *prometheus.HistogramVec // upstream
	up         *prometheus.GaugeVec     // upstream
	mismatched *prometheus.CounterVec   // upstream
}

// newCollectors registers the collectors on reg, or returns those
// registered before.
func newCollectors(reg prometheus.Registerer) *collectors {
	const ns = "appfence"
	return &collectors{
		requests: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_requests_total",
			Help: "Answers received from upstream servers, by upstream and response code."}, []string{"upstream", "rcode"})),
		errors: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_errors_total",
			Help: "Failed upstream exchanges, by upstream and kind (timeout, network, tls, http, other)."}, []string{"upstream", "kind"})),
		duration: promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_duration_seconds",
			Help:    "Round-trip time of upstream exchanges, by upstream.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"upstream"})),
		up: promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "upstream_up",
			Help: "1 when the upstream server is considered healthy, 0 when it is marked down."}, []string{"upstream"})),
		mismatched: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_mismatched_responses_total",
			Help: "UDP answers ignored because they did not answer the query waiting for them (wrong ID or question), by upstream."}, []string{"upstream"})),
	}
}
