package metrics

import "github.com/prometheus/client_golang/prometheus"

// Transport holds the collectors of the encrypted listeners (SPEC.md,
// "Metrics added in round 2").
type Transport struct {
	Queries         *prometheus.CounterVec // transport
	HandshakeErrors *prometheus.CounterVec // transport, reason
	Connections     *prometheus.GaugeVec   // transport
	CertExpiry      prometheus.Gauge
}

// Handshake error reasons, the values of the reason label.
var HandshakeReasons = []string{"certificate", "protocol", "timeout", "other"}

// QueryTransports are the values of the transport label of
// transport_queries_total.
var QueryTransports = []string{"udp", "tcp", "dot", "doh", "doq"}

// NewTransport creates the transport collectors on reg.
func NewTransport(reg prometheus.Registerer) *Transport {
	f := factory{reg}
	t := &Transport{
		Queries: f.counter("transport_queries_total",
			"Queries received, by transport (udp, tcp, dot, doh, doq).", "transport"),
		HandshakeErrors: f.counter("tls_handshake_errors_total",
			"Failed TLS handshakes, by transport and reason (certificate, protocol, timeout, other).", "transport", "reason"),
		Connections: f.gaugeVec("connections", "Open connections, by transport.", "transport"),
		CertExpiry: f.gauge("tls_certificate_expiry_timestamp_seconds",
			"Unix time at which the served TLS certificate expires."),
	}
	for _, tr := range QueryTransports {
		t.Queries.WithLabelValues(tr)
	}
	for _, tr := range []string{"dot", "doh", "doq"} {
		t.Connections.WithLabelValues(tr)
		for _, r := range HandshakeReasons {
			t.HandshakeErrors.WithLabelValues(tr, r)
		}
	}
	return t
}
