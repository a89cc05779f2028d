package metrics

import (
	"runtime"
	rtmetrics "runtime/metrics"
)

// The process's own gauges, as Prometheus's Go collector names them: what
// a soak test watches for leaks from outside.
func init() {
	Default.NewGaugeFunc("go_goroutines", "Goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	Default.NewGaugeFunc("go_gc_heap_live_bytes", "Heap memory occupied by live objects, as of the last garbage collection.", func() float64 {
		s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
		rtmetrics.Read(s)
		if s[0].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return float64(s[0].Value.Uint64())
	})
}
