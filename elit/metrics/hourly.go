package metrics

import (
	"sync"
	"time"
)

// What Traffic counts: messages received (queued), and recipients
// delivered, deferred (to be retried) and bounced (failed for good).
const (
	Received = iota
	Delivered
	Deferred
	Bounced
	kinds
)

// TrafficHours is how many hours Traffic keeps: two days.
const TrafficHours = 48

// Hour is what happened in one hour.
type Hour struct {
	Start                                  time.Time // UTC, on the hour
	Received, Delivered, Deferred, Bounced uint64
}

// Hourly counts events per hour over the last TrafficHours hours, in
// memory (a restart starts again from nothing): a ring of hours, so it
// stays the same size however long the server runs. It is safe for
// concurrent use.
type Hourly struct {
	now   func() time.Time
	mu    sync.Mutex
	ring  [TrafficHours][kinds]uint64
	hours [TrafficHours]int64 // the hour (Unix hours) each slot counts
}

// NewHourly returns an empty Hourly on clock now (nil: time.Now).
func NewHourly(now func() time.Time) *Hourly {
	if now == nil {
		now = time.Now
	}
	return &Hourly{now: now}
}

// Traffic is the server's traffic, as the status page charts it.
var Traffic = NewHourly(nil)

// Add counts n events of kind (Received, Delivered, Deferred, Bounced)
// now.
func (h *Hourly) Add(kind int, n uint64) {
	hour := h.now().Unix() / 3600
	i := hour % TrafficHours
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hours[i] != hour {
		h.hours[i], h.ring[i] = hour, [kinds]uint64{}
	}
	h.ring[i][kind] += n
}

// Hours returns the last TrafficHours hours, the oldest first, the
// current one last; hours without events count zero.
func (h *Hourly) Hours() []Hour {
	now := h.now().Unix() / 3600
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Hour, 0, TrafficHours)
	for hour := now - TrafficHours + 1; hour <= now; hour++ {
		e := Hour{Start: time.Unix(hour*3600, 0).UTC()}
		if i := hour % TrafficHours; h.hours[i] == hour {
			c := h.ring[i]
			e.Received, e.Delivered, e.Deferred, e.Bounced = c[Received], c[Delivered], c[Deferred], c[Bounced]
		}
		out = append(out, e)
	}
	return out
}
