package queue

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitDirSyncFails: when the directory sync after the envelope's
// rename fails, Commit fails and leaves nothing queued: not the message
// (the client is told to send it again: it would go twice), not an
// envelope without its data (stuck for ever), now or after a restart.
func TestCommitDirSyncFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		fails int // directory syncs that fail, from the first
		undo  bool
	}{
		{"the envelope's sync", 1, false},
		{"the envelope's sync and the undo's", 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			s.syncDir = func(string) error {
				n++
				if n <= c.fails {
					return errors.New("input/output error")
				}
				return nil
			}
			in, err := s.Begin()
			if err != nil {
				t.Fatal(err)
			}
			in.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
			err = s.Commit(in, newMessage("a@example.net"))
			if err == nil {
				t.Fatal("Commit succeeded")
			}
			if got := strings.Contains(err.Error(), "undoing the commit"); got != c.undo {
				t.Errorf("Commit: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("files left after the failed Commit: %q", names)
			}
			s2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if msgs, err := s2.List(); len(msgs) != 0 || err != nil {
				t.Errorf("after a restart: %d messages queued, %v", len(msgs), err)
			}
		})
	}
}

// TestOpenRemovesEnvelopeWithoutData: an envelope whose data is gone is
// no message (a failed Commit or damage left it); Open removes it rather
// than leave it to fail at every delivery attempt, and keeps the rest.
func TestOpenRemovesEnvelopeWithoutData(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	stuck, kept := newMessage("a@example.net"), newMessage("b@example.net")
	for _, m := range []*Message{stuck, kept} {
		if err := s.Put(m, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, stuck.ID+".msg"))
	os.WriteFile(filepath.Join(dir, "notes.json"), []byte("{}"), 0o600) // not the queue's: left alone

	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, stuck.ID+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the envelope without data is still there (%v)", err)
	}
	msgs, err := s2.List()
	if err != nil || len(msgs) != 1 || msgs[0].ID != kept.ID {
		t.Errorf("List after Open: %d messages, %v; want %s only", len(msgs), err, kept.ID)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.json")); err != nil {
		t.Errorf("Open removed a file not its own: %v", err)
	}
}

// TestOpenLogsCleanup: what Open removes is logged, the envelope without
// data as a warning naming it.
func TestOpenLogsCleanup(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	m := newMessage("a@example.net")
	if err := s.Put(m, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, m.ID+".msg"))
	os.WriteFile(filepath.Join(dir, "20261122T100500-0123456789ab.msg"), []byte("never acknowledged"), 0o600)
	os.WriteFile(filepath.Join(dir, ".20261122T100000-0123456789ab.msg123"), []byte("partial"), 0o600)
	var buf bytes.Buffer
	if _, err := Open(dir, WithLog(slog.New(slog.NewTextHandler(&buf, nil)))); err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	for _, want := range []string{
		"level=WARN msg=\"queue cleanup: removed an envelope without data (a failed commit, or damage)\" file=" + m.ID + ".json",
		"removed data without an envelope\" file=20261122T100500-0123456789ab.msg",
		"removed temporary file\" file=.20261122T100000-0123456789ab.msg123",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files left", len(entries))
	}
}
