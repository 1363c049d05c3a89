package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

var jsonOut = flag.Bool("json", false, "print the figures as one JSON document on stdout when done, and everything else on stderr")

// A figure is one number a run reports, with the bound it is judged by.
// Every section records its figures here as well as printing its own
// table, so that one run ends with all of them side by side, and -json
// hands the same list to a script.
type figure struct {
	Section string    `json:"section"`
	Name    string    `json:"name"`
	Value   float64   `json:"value"`
	Unit    string    `json:"unit"`
	Target  *bound    `json:"target,omitempty"`
	Met     *bool     `json:"met,omitempty"`
	Rounds  []float64 `json:"rounds,omitempty"` // the runs the value is the median of
}

// bound is a target: Value at least or at most Limit.
type bound struct {
	Op    string  `json:"op"` // ">=" or "<="
	Limit float64 `json:"limit"`
}

func atLeast(v float64) *bound { return &bound{">=", v} }
func atMost(v float64) *bound  { return &bound{"<=", v} }

func (b *bound) holds(v float64) bool {
	if b.Op == ">=" {
		return v >= b.Limit
	}
	return v <= b.Limit
}

func (b *bound) String() string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf("%s %g", b.Op, b.Limit)
}

// figures is what the run has recorded so far, in order.
var figures []figure

// record adds a figure; target may be nil for one reported beside others.
func record(section, name string, value float64, unit string, target *bound, rounds ...float64) {
	f := figure{Section: section, Name: name, Value: value, Unit: unit, Target: target, Rounds: rounds}
	if target != nil {
		met := target.holds(value)
		f.Met = &met
	}
	figures = append(figures, f)
}

// recordDuration records d in milliseconds or microseconds, whichever
// reads better for the section.
func recordDuration(section, name string, d time.Duration, unit string, target *bound) {
	scale := map[string]time.Duration{"ms": time.Millisecond, "µs": time.Microsecond}[unit]
	record(section, name, float64(d)/float64(scale), unit, target)
}

// report is the document -json prints.
type report struct {
	Date       string   `json:"date"`
	GoVersion  string   `json:"go"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Command    string   `json:"command"`
	Figures    []figure `json:"figures"`
}

// printSummary prints every figure of the run with its target, and the
// JSON document on stdout when asked for (main points os.Stdout, which the
// tables are printed on, at stderr under -json).
func printSummary(stdout io.Writer) {
	if len(figures) == 0 {
		return
	}
	fmt.Printf("\nsummary (%s, GOMAXPROCS=%d):\n", time.Now().UTC().Format("2006-01-02"), runtime.GOMAXPROCS(0))
	fmt.Printf("%-10s %-62s %14s  %-10s %s\n", "section", "figure", "value", "target", "met")
	for _, f := range figures {
		met := ""
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		fmt.Printf("%-10s %-62s %14s  %-10s %s\n", f.Section, f.Name, trimFloat(f.Value)+" "+f.Unit, f.Target, met)
	}
	if !*jsonOut {
		return
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	check(enc.Encode(report{
		Date:       time.Now().UTC().Format(time.RFC3339),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Command:    strings.Join(os.Args, " "),
		Figures:    figures,
	}))
}

// trimFloat prints v with three significant decimals at most, and none
// for large values.
func trimFloat(v float64) string {
	switch {
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
