// Package prometheus exports an exraft Server's metrics to Prometheus.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(exraftprom.NewCollector(server))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It is a module of its own, so that the library does not depend on
// Prometheus. Every metric is labelled with the server's name (server), so
// that the servers of one process can share a registry; the names, help
// texts and kinds are the library's (exraft.Metrics.Samples).
package prometheus

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exraft/exraft"
)

// Collector is a prometheus.Collector of one Server. Each scrape reads the
// server's Metrics, which never blocks on the protocol or the state machine.
type Collector struct {
	s *exraft.Server

	mu    sync.Mutex
	descs map[string]*prometheus.Desc // by name
}

// NewCollector returns the Collector of s.
func NewCollector(s *exraft.Server) *Collector {
	return &Collector{s: s, descs: map[string]*prometheus.Desc{}}
}

// Describe sends the description of every metric a scrape may give,
// those of a leader's peers included.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range exraft.SampleFamilies() {
		ch <- c.desc(&s)
	}
}

// Collect sends the server's metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.s.Metrics().Samples() {
		desc := c.desc(&s)
		labels := make([]string, len(s.Labels))
		for i, l := range s.Labels {
			labels[i] = l.Value
		}
		switch s.Kind {
		case exraft.CounterSample:
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, s.Value, labels...)
		case exraft.GaugeSample:
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, s.Value, labels...)
		case exraft.HistogramSample:
			h := s.Histogram
			buckets := make(map[float64]uint64, len(h.Bounds))
			var cum uint64
			for i, b := range h.Bounds {
				cum += h.Counts[i]
				buckets[b] = cum
			}
			ch <- prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, buckets, labels...)
		}
	}
}

// desc returns the description of s's name, made on first use.
func (c *Collector) desc(s *exraft.Sample) *prometheus.Desc {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.descs[s.Name]
	if d == nil {
		names := make([]string, len(s.Labels))
		for i, l := range s.Labels {
			names[i] = l.Name
		}
		d = prometheus.NewDesc(s.Name, s.Help, names, prometheus.Labels{"server": c.s.Name()})
		c.descs[s.Name] = d
	}
	return d
}
