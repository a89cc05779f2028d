package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestQueueOps: hold, release, retry and drop through the running server's
// control socket, and drop on the files when no server runs.
func TestQueueOps(t *testing.T) {
	sk := startSink(t, "", "-r", "RCPT")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-retry-first", "1h", "-retry-max", "2h")
	send := func() string {
		c := mxData(t, s.mx, "<sender@example.net>", "<din@example.org>")
		c.send("Subject: ops\r\n\r\nhello\r\n.\r\n")
		return queued(c.expect("250"))[0]
	}
	id := send()
	q := openQueue(t, s)
	status := func(id string) string {
		m, err := q.Get(id)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%s/%d", m.Recipients[0].Status, m.Recipients[0].Attempts)
	}
	waitFor(t, "the first attempt", func() bool { return status(id) == "pending/1" })
	elit := func(args ...string) string { t.Helper(); return elitQueue(t, s.state, args...) }
	if out := elit("hold", id); !strings.Contains(out, "1 recipients") || status(id) != "held/1" {
		t.Errorf("hold: %s, %s", out, status(id))
	}
	elit("release", id)
	waitFor(t, "a second attempt after release", func() bool { return status(id) == "pending/2" })
	elit("retry", id)
	waitFor(t, "a third attempt after retry", func() bool { return status(id) == "pending/3" })
	elit("drop", id)
	if _, err := q.Get(id); err == nil {
		t.Errorf("dropped, still queued")
	}
	waitLog(t, s, "bounce queued")
	if code, out := runTool(t, "", elitBinary(t), "queue", "-state", s.state, "hold", "20260101T000000-000000000000"); code == 0 {
		t.Errorf("hold of a missing message: %s", out)
	}
	// Offline: no server, the command edits the files.
	id2 := send()
	s.stop()
	if out := elit("-no-bounce", "drop", id2); !strings.Contains(out, "drop-quietly") {
		t.Errorf("offline drop: %s", out)
	}
	msgs, _ := q.List()
	bounces := 0
	for _, m := range msgs {
		if m.ID == id2 {
			t.Errorf("offline drop left the message")
		}
		if m.From == "" && m.Recipients[0].Address == "sender@example.net" {
			bounces++
		}
	}
	if bounces != 1 { // the online drop's (the sink defers it); none from -no-bounce
		t.Errorf("%d bounces queued, want 1", bounces)
	}
}

// TestQueueOfflineDropBounce: a message dropped while the server is
// stopped is bounced by the server when it starts again: from
// MAILER-DAEMON at the mail domain, reported by its host name, to the
// sender, and then leaves the queue.
func TestQueueOfflineDropBounce(t *testing.T) {
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.Addr)
	startSink(t, "127.0.0.2:"+port, "-r", "RCPT") // the forward is deferred
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.2", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-retry-first", "1h", "-retry-max", "2h")
	c := mxData(t, s.mx, "<sender@example.net>", "<din@example.org>")
	c.send("From: sender@example.net\r\nSubject: to drop\r\nMessage-ID: <drop@example.net>\r\n\r\nhello\r\n.\r\n")
	id := queued(c.expect("250"))[0]
	q := openQueue(t, s)
	status := func() string {
		m, err := q.Get(id)
		if err != nil {
			return err.Error()
		}
		r := m.Recipients[0]
		return fmt.Sprintf("%s/%d/%v", r.Status, r.Attempts, r.Bounced)
	}
	waitFor(t, "the first attempt", func() bool { return status() == "pending/1/false" })
	s.stop()

	code, out := runTool(t, "", elitBinary(t), "queue", "-state", s.state, "drop", id)
	if code != 0 || !strings.Contains(out, "next start") {
		t.Fatalf("offline drop: exit %d: %s", code, out)
	}
	if got := status(); got != "failed/1/false" {
		t.Errorf("after the offline drop: %s, want failed/1/false", got)
	}
	if msgs, _ := q.List(); len(msgs) != 1 {
		t.Fatalf("%d messages queued after the offline drop, want the dropped one only (no DSN)", len(msgs))
	}

	s.log.Reset()
	s.start()
	waitFor(t, "the bounce", func() bool { return len(good.messages()) == 1 })
	dump := good.messages()[0]
	for _, want := range []string{"X-Mail-Args: <>", "X-Rcpt-Args: <sender@example.net>",
		"From: Mail Delivery System <MAILER-DAEMON@example.org>", "Reporting-MTA: dns; mx.example.org",
		"dropped from the queue by the operator", "Message-ID: <drop@example.net>"} {
		if !strings.Contains(dump, want) {
			t.Errorf("the bounce lacks %q:\n%s", want, dump)
		}
	}
	if strings.Contains(dump, "localhost") {
		t.Errorf("the bounce names localhost:\n%s", dump)
	}
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
}
