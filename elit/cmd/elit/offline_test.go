package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/queue"
)

// TestQueueOffline: with no server running, elit queue only edits the
// envelope. A drop marks the undelivered recipients failed, not yet
// bounced, and makes no DSN (the server makes it, with its own host name
// and users, at its next start); a drop nobody is told of removes the
// message; hold, release and retry edit the recipients' state; the
// default state directory is elit serve's.
func TestQueueOffline(t *testing.T) {
	state := t.TempDir()
	s, err := queue.Open(filepath.Join(state, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(from string, rcpts ...queue.Recipient) *queue.Message {
		t.Helper()
		m := &queue.Message{From: from, Recipients: rcpts}
		if err := s.Put(m, strings.NewReader("Subject: x\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
		return m
	}
	elit := func(args ...string) string {
		t.Helper()
		code, out, errs := runElit("", append([]string{"queue", "-state", state}, args...)...)
		if code != exitOK {
			t.Fatalf("elit queue %q: exit %d: %s", args, code, errs)
		}
		return out
	}
	get := func(id string) *queue.Message {
		t.Helper()
		m, err := s.Get(id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return m
	}

	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	m := put("din@example.org",
		queue.Recipient{Address: "a@example.net", Status: queue.Pending, Attempts: 2, LastError: "4.4.1 connection refused", NextAttempt: later},
		queue.Recipient{Address: "b@example.net", Status: queue.Delivered},
		queue.Recipient{Address: "c@example.net", Status: queue.Held})
	out := elit("drop", m.ID)
	if !strings.Contains(out, "2 recipients") || !strings.Contains(out, "elit serve sends the bounce") || !strings.Contains(out, "next start") {
		t.Errorf("drop said %q; want what was done and that the server sends the bounce at its next start", out)
	}
	got := get(m.ID)
	for i, want := range []queue.Status{queue.Failed, queue.Delivered, queue.Failed} {
		r := got.Recipients[i]
		if r.Status != want || r.Bounced {
			t.Errorf("recipient %s: %s, bounced %v; want %s, not bounced", r.Address, r.Status, r.Bounced, want)
		}
		if want == queue.Failed && !r.NextAttempt.IsZero() {
			t.Errorf("recipient %s: failed, to be reported at %v, want now", r.Address, r.NextAttempt)
		}
		if want == queue.Failed && !strings.HasPrefix(r.LastError, "5.3.0 dropped from the queue by the operator") {
			t.Errorf("recipient %s: last error %q", r.Address, r.LastError)
		}
	}
	if !strings.HasSuffix(got.Recipients[0].LastError, "4.4.1 connection refused") {
		t.Errorf("the last error is lost: %q", got.Recipients[0].LastError)
	}
	msgs, err := s.List()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("queue after an offline drop: %d messages (%v), want the dropped one and no DSN", len(msgs), err)
	}
	for _, id := range []string{msgs[0].ID} {
		data, _ := os.ReadFile(filepath.Join(state, "queue", id+".q"))
		if strings.Contains(string(data), "localhost") {
			t.Errorf("a message names localhost:\n%s", data)
		}
	}

	// Nobody to tell: removed at once.
	for _, c := range []struct {
		name string
		from string
		args []string
	}{
		{"-no-bounce", "din@example.org", []string{"-no-bounce", "drop"}},
		{"null sender", "", []string{"drop"}},
	} {
		m := put(c.from, queue.Recipient{Address: "a@example.net", Status: queue.Pending})
		out := elit(append(c.args, m.ID)...)
		if _, err := s.Get(m.ID); err == nil || !strings.Contains(out, "removed") {
			t.Errorf("%s: drop said %q and left the message (%v)", c.name, out, err)
		}
	}
	if msgs, _ := s.List(); len(msgs) != 1 {
		t.Errorf("%d messages queued, want only the first dropped one", len(msgs))
	}

	// Hold, release, retry.
	h := put("din@example.org", queue.Recipient{Address: "a@example.net", Status: queue.Pending, NextAttempt: later})
	elit("hold", h.ID)
	if r := get(h.ID).Recipients[0]; r.Status != queue.Held {
		t.Errorf("hold: %s", r.Status)
	}
	elit("release", h.ID)
	if r := get(h.ID).Recipients[0]; r.Status != queue.Pending || !r.NextAttempt.IsZero() {
		t.Errorf("release: %s, next attempt %v", r.Status, r.NextAttempt)
	}
	if err := s.Update(&queue.Message{ID: h.ID, From: h.From, Received: h.Received, Size: h.Size,
		Recipients: []queue.Recipient{{Address: "a@example.net", Status: queue.Pending, NextAttempt: later}}}); err != nil {
		t.Fatal(err)
	}
	elit("retry", h.ID)
	if r := get(h.ID).Recipients[0]; r.Status != queue.Pending || !r.NextAttempt.IsZero() {
		t.Errorf("retry: %s, next attempt %v", r.Status, r.NextAttempt)
	}
}
