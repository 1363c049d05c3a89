package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/exraft/exraft"
)

// serveMetrics serves the server's metrics at http://addr/metrics in the
// Prometheus text format, for a Prometheus server to scrape. A program that
// has a Prometheus registry registers the exraft/prometheus module's
// Collector instead; this one writes the same samples by hand, so that the
// example needs no dependency.
func serveMetrics(addr string, server *exraft.Server) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, server)
	})
	srv := &http.Server{Addr: addr, Handler: mux}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	go srv.Serve(ln)
	return srv, nil
}

// writeMetrics writes the server's samples in the Prometheus text format.
func writeMetrics(w io.Writer, server *exraft.Server) {
	last := ""
	for _, s := range server.Metrics().Samples() {
		if s.Name != last {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", s.Name, s.Help, s.Name, kindName(s.Kind))
			last = s.Name
		}
		labels := append([]exraft.Label{{Name: "server", Value: server.Name()}}, s.Labels...)
		if s.Kind != exraft.HistogramSample {
			fmt.Fprintf(w, "%s%s %s\n", s.Name, labelText(labels), num(s.Value))
			continue
		}
		var cum uint64
		for i, b := range s.Histogram.Bounds {
			cum += s.Histogram.Counts[i]
			fmt.Fprintf(w, "%s_bucket%s %d\n", s.Name, labelText(append(labels, exraft.Label{Name: "le", Value: num(b)})), cum)
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", s.Name, labelText(append(labels, exraft.Label{Name: "le", Value: "+Inf"})), s.Histogram.Count)
		fmt.Fprintf(w, "%s_sum%s %s\n%s_count%s %d\n", s.Name, labelText(labels), num(s.Histogram.Sum), s.Name, labelText(labels), s.Histogram.Count)
	}
}

func kindName(k exraft.SampleKind) string {
	switch k {
	case exraft.CounterSample:
		return "counter"
	case exraft.HistogramSample:
		return "histogram"
	}
	return "gauge"
}

func labelText(labels []exraft.Label) string {
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = l.Name + "=" + strconv.Quote(l.Value)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
