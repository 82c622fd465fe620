package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRegisterTwice: registering a collector of the same description again
// returns the first one, whose series go on counting.
func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "things_total", Help: "Things."}
	a := Register(reg, prometheus.NewCounterVec(opts, []string{"kind"}))
	a.WithLabelValues("x").Inc()
	b := Register(reg, prometheus.NewCounterVec(opts, []string{"kind"}))
	if b != a {
		t.Fatal("the second registration returned a new collector")
	}
	b.WithLabelValues("x").Inc()
	if got := testutil.ToFloat64(a.WithLabelValues("x")); got != 2 {
		t.Errorf("count = %v, want 2", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a gauge of the counter's name registered without a panic")
		}
	}()
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "things_total", Help: "Other."}))
}
