package maillog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestTee: records about a queued message (an "id", given with the
// record or by With) are kept, others not, and all go on to the log;
// the ring keeps the last n; the filter finds a queue ID or an address.
func TestTee(t *testing.T) {
	var out bytes.Buffer
	r := New(3)
	log := slog.New(r.Tee(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	log.Info("queued", "id", "A1", "from", "din@example.org")
	log.With("id", "B2", "to", "kim@example.com").Info("delivery deferred", "err", "451 try later")
	log.Info("listening", "addr", ":25")
	log.Debug("debug", "id", "A1")
	log.With("job", "deliver").WithGroup("g").Info("grouped", "id", "C3") // g.id is not a queue ID
	log.Warn("delivery failed", "id", "A1", "to", "x@example.net")
	got := r.Lines("", 10)
	var texts []string
	for _, l := range got {
		texts = append(texts, l.Text)
	}
	want := []string{
		"delivery failed id=A1 to=x@example.net",
		`delivery deferred id=B2 to=kim@example.com err="451 try later"`,
		"queued id=A1 from=din@example.org",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Errorf("kept\n%s\nwant\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "delivery failed") || strings.Contains(out.String(), "queued") {
		t.Errorf("the log at its own level:\n%s", out.String())
	}
	if l := r.Lines("KIM@example", 10); len(l) != 1 || !strings.Contains(l[0].Text, "B2") {
		t.Errorf("filtered by address: %v", l)
	}
	r.add(Line{Text: "id=D4"})
	if l := r.Lines("", 10); len(l) != 3 || l[0].Text != "id=D4" || strings.Contains(l[2].Text, "queued") {
		t.Errorf("the ring of 3 after a 4th: %v", l)
	}
}

// TestTeeNext: the log handler behind the tee gets the attributes and
// groups of With in their order, applied only when a record reaches it,
// and a logger shared by goroutines applies them once.
func TestTeeNext(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(New(10).Tee(slog.NewTextHandler(&out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	l := log.With("id", "A1").WithGroup("g").With("to", "kim@example.com")
	done := make(chan bool)
	for range 4 {
		go func() {
			l.Info("delivered", "n", 1)
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
	want := "level=INFO msg=delivered id=A1 g.to=kim@example.com g.n=1\n"
	if out.String() != strings.Repeat(want, 4) {
		t.Errorf("next got\n%s\nwant 4 times\n%s", out.String(), want)
	}
}
