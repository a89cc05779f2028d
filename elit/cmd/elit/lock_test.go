package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/queue"
)

// TestServeLock: a running server holds its state directory. With its
// control socket gone, elit queue refuses to act on the files (it would
// race the server) and leaves the server's temporary files alone; a
// second elit serve on it refuses to start (exit 125, one line).
func TestServeLock(t *testing.T) {
	s := startServer(t)
	c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: lock\r\n\r\nhello\r\n.\r\n")
	id := queued(c.expect("250"))[0]
	q := openQueue(t, s)

	// A server's message being written, and its control socket removed
	// (the server still running).
	tmp := filepath.Join(s.state, "queue", ".20260101T000000-0123456789ab.msg123456")
	if err := os.WriteFile(tmp, []byte("half a message"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(controlSocket(s.state)); err != nil {
		t.Fatal(err)
	}
	code, out := runTool(t, "", elitBinary(t), "queue", "-state", s.state, "hold", id)
	if code != exitFailure || !strings.Contains(out, "locked by another process") || !strings.Contains(out, "control socket") {
		t.Errorf("elit queue hold with the server's socket gone: exit %d: %s; want 125 and why", code, out)
	}
	if m, err := q.Get(id); err != nil || m.Recipients[0].Status != queue.Pending {
		t.Errorf("the message was changed: %+v, %v", m, err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("the server's temporary file was removed: %v", err)
	}
	code, errs := runServe(t, s.args[1:]...)
	if code != exitFailure || !strings.Contains(errs, "in use by another elit serve") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("a second server on %s: exit %d, stderr %q; want 125 and one line saying it is in use", s.state, code, errs)
	}
	// The first server still serves.
	c = dialRaw(t, s.mx)
	c.send("QUIT\r\n")
	c.expect("221")
}

// TestQueueLocked: while another process holds the queue lock (here the
// test itself), elit queue does not edit the files and elit serve does not
// start; once it is released, both work.
func TestQueueLocked(t *testing.T) {
	state := t.TempDir()
	s, err := queue.Open(filepath.Join(state, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "x@example.net", Recipients: []queue.Recipient{{Address: "a@example.net"}}}
	if err := s.Put(m, strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	lock, err := queue.LockDir(filepath.Join(state, "queue"), 0)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := runElit("", "queue", "-state", state, "hold", m.ID)
	if code != exitFailure || !strings.Contains(errs, "nothing changed") {
		t.Errorf("hold while locked: exit %d: %s", code, errs)
	}
	if got, _ := s.Get(m.ID); got.Recipients[0].Status != queue.Pending {
		t.Errorf("hold while locked changed the message: %s", got.Recipients[0].Status)
	}
	db := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(db, testDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	code, errs = runServe(t, "-domain", "example.org", "-db-json", db, "-state", state,
		"-mx-addr", "127.0.0.1:0", "-submission-addr", "", "-submissions-addr", "")
	if code != exitFailure || !strings.Contains(errs, "in use by another elit serve") {
		t.Errorf("serve while locked: exit %d: %s", code, errs)
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runElit("", "queue", "-state", state, "hold", m.ID); code != exitOK || !strings.Contains(out, "1 recipients") {
		t.Errorf("hold after unlock: exit %d: %s%s", code, out, errs)
	}
}

// TestQueueOfflineDropBounce: a message dropped while the server is
// stopped is bounced by the server when it starts again: from
// MAILER-DAEMON at the mail domain, reported by its host name, to the
// sender, and then leaves the queue.
func TestQueueOfflineDropBounce(t *testing.T) {
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.addr)
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
