package cache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/internal/promreg"
)

// The cache's collectors, declared here and registered on the registerer
// New is given (SPEC, Metrics: the names are part of the contract).
func newCollectors(reg prometheus.Registerer) (*prometheus.CounterVec, prometheus.Gauge) {
	requests := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "appfence", Name: "cache_requests_total",
		Help: "Cache lookups, by result (hit, miss, stale).",
	}, []string{"result"}))
	entries := promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "appfence", Name: "cache_entries",
		Help: "Entries in the cache.",
	}))
	return requests, entries
}
