// Package metrics keeps Elit's counters and serves them in the Prometheus
// text exposition format (version 0.0.4): counters, counters with one
// label, and gauges read when scraped. It is small on purpose; the
// packages that count register their metrics in Default.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry is a set of metrics.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]metric
}

type metric interface {
	write(w io.Writer, name string)
	help() string
	kind() string
}

// Default is the registry elit serve exposes.
var Default = &Registry{}

// add registers m; a name registered twice is a bug unless replace.
func (r *Registry) add(name string, m metric, replace bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.metrics == nil {
		r.metrics = map[string]metric{}
	}
	if _, ok := r.metrics[name]; ok && !replace {
		panic("metrics: " + name + " registered twice")
	}
	r.metrics[name] = m
}

// Counter only goes up.
type Counter struct {
	v    atomic.Uint64
	text string
}

// NewCounter registers a counter.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := &Counter{text: help}
	r.add(name, c, false)
	return c
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) write(w io.Writer, name string) { fmt.Fprintf(w, "%s %d\n", name, c.v.Load()) }
func (c *Counter) help() string                   { return c.text }
func (c *Counter) kind() string                   { return "counter" }

// CounterVec is counters by the value of one label.
type CounterVec struct {
	label, text string
	mu          sync.Mutex
	v           map[string]*atomic.Uint64
}

// NewCounterVec registers counters labelled with label.
func (r *Registry) NewCounterVec(name, help, label string) *CounterVec {
	c := &CounterVec{label: label, text: help, v: map[string]*atomic.Uint64{}}
	r.add(name, c, false)
	return c
}

// Inc adds one to the counter of value.
func (c *CounterVec) Inc(value string) { c.get(value).Add(1) }

// Add adds x to the counter of value.
func (c *CounterVec) Add(value string, x uint64) { c.get(value).Add(x) }

// Value returns the count of value.
func (c *CounterVec) Value(value string) uint64 { return c.get(value).Load() }

func (c *CounterVec) get(value string) *atomic.Uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.v[value]
	if v == nil {
		v = new(atomic.Uint64)
		c.v[value] = v
	}
	return v
}

func (c *CounterVec) write(w io.Writer, name string) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.v))
	for k := range c.v {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{%s=%q} %d\n", name, c.label, k, c.get(k).Load())
	}
}
func (c *CounterVec) help() string { return c.text }
func (c *CounterVec) kind() string { return "counter" }

// Seconds is a counter of time spent.
type Seconds struct {
	ns   atomic.Int64
	text string
}

// NewSeconds registers a counter of seconds.
func (r *Registry) NewSeconds(name, help string) *Seconds {
	s := &Seconds{text: help}
	r.add(name, s, false)
	return s
}

// Add adds d.
func (s *Seconds) Add(d time.Duration) { s.ns.Add(int64(d)) }

func (s *Seconds) write(w io.Writer, name string) {
	fmt.Fprintf(w, "%s %g\n", name, time.Duration(s.ns.Load()).Seconds())
}
func (s *Seconds) help() string { return s.text }
func (s *Seconds) kind() string { return "counter" }

// GaugeFunc is a value read when scraped.
type GaugeFunc struct {
	f    func() float64
	text string
}

// NewGaugeFunc registers a gauge whose value f returns.
func (r *Registry) NewGaugeFunc(name, help string, f func() float64) {
	r.add(name, &GaugeFunc{f: f, text: help}, false)
}

// SetGaugeFunc registers or replaces a gauge (for values owned by an
// object made at run time, such as the deliverer's queue).
func (r *Registry) SetGaugeFunc(name, help string, f func() float64) {
	r.add(name, &GaugeFunc{f: f, text: help}, true)
}

func (g *GaugeFunc) write(w io.Writer, name string) { fmt.Fprintf(w, "%s %g\n", name, g.f()) }
func (g *GaugeFunc) help() string                   { return g.text }
func (g *GaugeFunc) kind() string                   { return "gauge" }

// Write writes every metric, sorted by name.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	names := make([]string, 0, len(r.metrics))
	for n := range r.metrics {
		names = append(names, n)
	}
	ms := make(map[string]metric, len(r.metrics))
	for n, m := range r.metrics {
		ms[n] = m
	}
	r.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		m := ms[n]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", n, strings.ReplaceAll(m.help(), "\n", " "), n, m.kind())
		m.write(w, n)
	}
}

// ServeHTTP serves the metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	r.Write(w)
}
