package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/config"
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
	if err := os.Remove(config.State{Dir: s.state}.ControlSocket()); err != nil {
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
