// Package promtest scrapes a Prometheus endpoint over real HTTP in tests
// and turns the metric families of the text exposition format into values
// keyed by their labels, so that tests compare numbers instead of grepping
// text.
package promtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url (an http://host:port/metrics address) and parses the
// text exposition format. It fails the test on any error.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s\n%s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: parse: %v", url, err)
	}
	return fams
}

// Values returns the values of a counter or gauge family, keyed by the
// values of labels joined with "/" ("default/blocked" for group, action).
// A missing family gives an empty map.
func (f Families) Values(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	fam := f[name]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		}
		out[key(m, labels)] = v
	}
	return out
}

// Counts returns the observation counts of a histogram family, keyed like
// Values.
func (f Families) Counts(name string, labels ...string) map[string]uint64 {
	out := map[string]uint64{}
	fam := f[name]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		out[key(m, labels)] = m.GetHistogram().GetSampleCount()
	}
	return out
}

// LabelNames returns the label names the family's series carry.
func (f Families) LabelNames(name string) map[string]bool {
	out := map[string]bool{}
	if fam := f[name]; fam != nil {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				out[l.GetName()] = true
			}
		}
	}
	return out
}

func key(m *dto.Metric, labels []string) string {
	vals := make([]string, len(labels))
	for i, name := range labels {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				vals[i] = l.GetValue()
			}
		}
	}
	return strings.Join(vals, "/")
}

// Gather collects the families of g in process, for tests that do not
// need HTTP (waiting for a count before scraping, for example).
func Gather(t testing.TB, g prometheus.Gatherer) Families {
	t.Helper()
	list, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	fams := Families{}
	for _, f := range list {
		fams[f.GetName()] = f
	}
	return fams
}
