// Package maillog keeps the recent mail log in memory for the status
// page: the log records about queued messages (those with an "id"
// attribute, the queue ID: queued, delivered, deferred, failed,
// bounced), at level Info and above, as text lines in a ring of bounded
// size. The log itself still goes where it went: Ring.Tee wraps the
// server's slog handler.
package maillog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Keep is how many lines elit serve keeps: a busy day's worth on a
// small server, about a megabyte.
const Keep = 5000

// Line is one record of the mail log.
type Line struct {
	Time  time.Time
	Level slog.Level
	Text  string // the message and its attributes, key=value
}

// Ring is the last lines of the mail log. It is safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines []Line // a ring: next is the oldest once full
	next  int
	full  bool
}

// New returns a ring that keeps the last n lines.
func New(n int) *Ring { return &Ring{lines: make([]Line, n)} }

func (r *Ring) add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = l
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// Lines returns the lines that contain filter (case-insensitive; ""
// for all), the newest first, at most max.
func (r *Ring) Lines(filter string, max int) []Line {
	filter = strings.ToLower(filter)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Line
	n := r.next
	if r.full {
		n = len(r.lines)
	}
	for i := 1; i <= n && len(out) < max; i++ {
		l := r.lines[(r.next-i+len(r.lines))%len(r.lines)]
		if filter == "" || strings.Contains(strings.ToLower(l.Text), filter) {
			out = append(out, l)
		}
	}
	return out
}

// Tee returns a handler that passes every record to next and keeps the
// mail log's in r.
func (r *Ring) Tee(next slog.Handler) slog.Handler {
	return &tee{ring: r, root: next, next: &lazy{h: next}}
}

type tee struct {
	ring   *Ring
	root   slog.Handler // next before any With: it says what is enabled
	next   *lazy
	prefix string // the attributes of With, as text
	hasID  bool   // among them an "id"
	group  string
}

// lazy is next with the attributes and groups of With applied only when
// a record goes to it: a logger made for each message (log.With("id",
// ...)) that logs nothing at next's level would otherwise pay for
// slog.TextHandler's formatting of its attributes (5 % of the relay's
// CPU under make bench).
type lazy struct {
	once   sync.Once
	parent *lazy // nil for the root, whose h is set from the start
	attrs  []slog.Attr
	group  string // WithGroup's name, when not attrs
	h      slog.Handler
}

func (l *lazy) get() slog.Handler {
	if l.parent == nil {
		return l.h
	}
	l.once.Do(func() {
		p := l.parent.get()
		if l.group != "" {
			l.h = p.WithGroup(l.group)
		} else {
			l.h = p.WithAttrs(l.attrs)
		}
	})
	return l.h
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || t.root.Enabled(ctx, l)
}

func (t *tee) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if t.root.Enabled(ctx, rec.Level) {
		err = t.next.get().Handle(ctx, rec)
	}
	if rec.Level < slog.LevelInfo {
		return err
	}
	hasID := t.hasID
	var b strings.Builder
	b.WriteString(rec.Message)
	b.WriteString(t.prefix)
	rec.Attrs(func(a slog.Attr) bool {
		hasID = hasID || t.group == "" && a.Key == "id"
		writeAttr(&b, t.group, a)
		return true
	})
	if hasID {
		t.ring.add(Line{Time: rec.Time, Level: rec.Level, Text: b.String()})
	}
	return err
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	c := *t
	c.next = &lazy{parent: t.next, attrs: as}
	var b strings.Builder
	b.WriteString(t.prefix)
	for _, a := range as {
		c.hasID = c.hasID || t.group == "" && a.Key == "id"
		writeAttr(&b, t.group, a)
	}
	c.prefix = b.String()
	return &c
}

func (t *tee) WithGroup(name string) slog.Handler {
	c := *t
	c.next = &lazy{parent: t.next, group: name}
	c.group = t.group + name + "."
	return &c
}

// writeAttr writes " key=value", the value quoted when it has spaces.
func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			writeAttr(b, group+a.Key+".", g)
		}
		return
	}
	s := v.String()
	if v.Kind() == slog.KindTime {
		s = v.Time().Format(time.RFC3339)
	}
	if strings.ContainsAny(s, " \t\"=") || s == "" {
		s = `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	b.WriteString(" " + group + a.Key + "=" + s)
}
