package metrics

import (
	"testing"
	"time"
)

// TestHourly: events count in their hour; the ring keeps two days, older
// hours are forgotten, hours without events are zero.
func TestHourly(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	h := NewHourly(func() time.Time { return now })
	h.Add(Received, 2)
	h.Add(Delivered, 1)
	now = now.Add(time.Hour)
	h.Add(Deferred, 3)
	hs := h.Hours()
	if len(hs) != TrafficHours {
		t.Fatalf("%d hours", len(hs))
	}
	last, prev := hs[len(hs)-1], hs[len(hs)-2]
	if last.Start != time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC) || last.Deferred != 3 || last.Received != 0 {
		t.Errorf("this hour: %+v", last)
	}
	if prev.Received != 2 || prev.Delivered != 1 {
		t.Errorf("the hour before: %+v", prev)
	}
	now = now.Add(TrafficHours * time.Hour) // the same slots, two days on
	h.Add(Bounced, 1)
	for i, e := range h.Hours() {
		want := uint64(0)
		if i == TrafficHours-1 {
			want = 1
		}
		if e.Received != 0 || e.Delivered != 0 || e.Deferred != 0 || e.Bounced != want {
			t.Errorf("two days on, hour %d: %+v", i, e)
		}
	}
}
