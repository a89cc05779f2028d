package metrics

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestExposition(t *testing.T) {
	r := &Registry{}
	c := r.NewCounter("elit_test_total", "A test counter.")
	v := r.NewCounterVec("elit_test_results_total", "Results by kind.", "result")
	r.NewGaugeFunc("elit_test_gauge", "A gauge.", func() float64 { return 2.5 })
	c.Add(3)
	v.Inc("ok")
	v.Inc("ok")
	v.Inc(`we"ird`)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, nil)
	golden := filepath.Join("testdata", "exposition.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, rec.Body.Bytes(), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Errorf("got\n%s\nwant\n%s", rec.Body.Bytes(), want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
}

// TestRuntimeGauges: the default registry has the goroutines and the
// live heap.
func TestRuntimeGauges(t *testing.T) {
	var b bytes.Buffer
	Default.Write(&b)
	for _, re := range []string{`(?m)^go_goroutines [1-9][0-9]*$`, `(?m)^go_gc_heap_live_bytes [0-9.e+]+$`} {
		if !regexp.MustCompile(re).Match(b.Bytes()) {
			t.Errorf("no %s in\n%s", re, b.String())
		}
	}
}
