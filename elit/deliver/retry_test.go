package deliver

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// TestBounceFailureBacksOff: a bounce that cannot be made (here the
// message data is damaged, so the DSN cannot quote it; a full disk does
// the same) is retried on the backoff schedule of deliveries, doubling each
// time, not at once in a loop.
func TestBounceFailureBacksOff(t *testing.T) {
	clock := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	d := newDeliverer(t, Config{Resolver: &dns.Mem{}, Now: func() time.Time { return clock }})
	m := &queue.Message{From: "sender@example.net", Ret: "FULL", Received: clock, Recipients: []queue.Recipient{
		{Address: "a@example.com", Status: queue.Failed, LastError: "5.1.1 a@example.com: no such user"},
	}}
	queueMessage(t, d, m)
	name := filepath.Join(d.cfg.Queue.Dir(), m.ID+".q")
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b[32] ^= 1 // the first byte of the data: it fails its checksum (RET=FULL: the DSN reads it whole)
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute} {
		d.process(context.Background(), m.ID)
		due, ok := d.sched.dueAt(m.ID)
		if got := due.Sub(clock); !ok || got < want*9/10 || got > want*11/10 {
			t.Fatalf("after failed bounce %d: next attempt in %v (scheduled %v), want %v ±10%%", i+1, got, ok, want)
		}
		stored, err := d.cfg.Queue.Get(m.ID)
		if err != nil || stored.Recipients[0].Bounced || stored.Recipients[0].Status != queue.Failed {
			t.Fatalf("after failed bounce %d: %+v, %v", i+1, stored, err)
		}
		if next := stored.Recipients[0].NextAttempt; !next.Equal(due) {
			t.Errorf("after failed bounce %d: the queue says the next attempt is %v, not %v (a restart would not wait)", i+1, next, due)
		}
		clock = due // the next attempt
	}
}
