package queue

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestCommitDirSyncFails: when the sync after the file's rename fails, Commit fails and leaves nothing queued: not the message
// (the client is told to send it again: it would go twice), not an
// envelope without its data (stuck for ever), now or after a restart.
func TestCommitDirSyncFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		fails int // directory syncs that fail, from the first
		undo  bool
	}{
		{"the commit's sync", 1, false},
		{"the commit's sync and the undo's", 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			s.group.fn = func() error {
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

// writeLegacy writes a message in the former layout: <id>.msg, <id>.json.
func writeLegacy(t *testing.T, dir, id, data string, withData, withEnvelope bool) {
	t.Helper()
	env := `{"id": "` + id + `", "received": "2026-01-01T00:00:00Z", "from": "din@example.org",
  "recipients": [{"address": "a@example.com", "status": "pending", "attempts": 2, "last_error": "4.2.2 mailbox full"}],
  "header": "Received: by us\r\n", "size": ` + strconv.Itoa(len(data)+len("Received: by us\r\n")) + `}`
	if withData {
		os.WriteFile(filepath.Join(dir, id+".msg"), []byte(data), 0o600)
	}
	if withEnvelope {
		os.WriteFile(filepath.Join(dir, id+".json"), []byte(env), 0o600)
	}
}

// TestOpenConvertsFormerLayout: Open turns a queue of the former layout
// (data and envelope files) into one file per message, readable and
// intact; it removes what the former Open removed (data without an
// envelope, never acknowledged; an envelope without data, no message:
// a warning), and leaves alone files not its own. A conversion a crash
// cut (both forms there) ends at the next Open.
func TestOpenConvertsFormerLayout(t *testing.T) {
	dir := t.TempDir()
	const (
		pair    = "20260101T000000-0123456789ab"
		again   = "20260101T000001-0123456789ab" // converted, the pair not yet removed
		torn    = "20260101T000002-0123456789ab" // converted, torn, the pair still there
		noEnv   = "20260101T000003-0123456789ab"
		noData  = "20260101T000004-0123456789ab"
		content = "Subject: x\r\n\r\nbody\r\n"
	)
	for _, id := range []string{pair, again, torn} {
		writeLegacy(t, dir, id, content, true, true)
	}
	writeLegacy(t, dir, noEnv, content, true, false)
	writeLegacy(t, dir, noData, content, false, true)
	os.WriteFile(filepath.Join(dir, "notes.json"), []byte("{}"), 0o600) // not the queue's: left alone
	// "again" converted whole before; "torn" half written.
	s0, err := newStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.convertOne(again); err != nil {
		t.Fatal(err)
	}
	if err := s0.convertOne(torn); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, torn+fileSuffix))
	os.WriteFile(filepath.Join(dir, torn+fileSuffix), b[:len(b)-5], 0o600)

	var buf bytes.Buffer
	s, err := Open(dir, WithLog(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.List()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("List: %d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if r := m.Recipients[0]; r.Attempts != 2 || r.LastError != "4.2.2 mailbox full" || r.Status != Pending {
			t.Errorf("%s: %+v", m.ID, r)
		}
		f, err := s.Data(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(got) != "Received: by us\r\n"+content {
			t.Errorf("%s: data %q, %v", m.ID, got, err)
		}
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{pair + ".q", again + ".q", torn + ".q", "notes.json"}
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("after Open: %q, want %q", names, want)
	}
	log := buf.String()
	for _, w := range []string{
		"level=WARN msg=\"queue cleanup: removed an envelope without data (a failed commit, or damage)\" file=" + noData + ".json",
		"removed data without an envelope\" file=" + noEnv + ".msg",
		"converted to one file per message\" messages=3",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
}

// TestOpenLogsCleanup: what Open removes or puts aside is logged, a
// damaged file as a warning naming it, and it leaves the queue.
func TestOpenLogsCleanup(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	m := newMessage("a@example.net")
	if err := s.Put(m, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, m.ID+fileSuffix)
	b, _ := os.ReadFile(name)
	b[headerSize] ^= 1 // the data
	os.WriteFile(name, b, 0o600)
	os.WriteFile(filepath.Join(dir, ".20261122T100000-0123456789ab.q.tmp"), []byte("partial"), 0o600)
	var buf bytes.Buffer
	s2, err := Open(dir, WithLog(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	for _, want := range []string{
		"level=WARN msg=\"queue cleanup: put aside a damaged queue file (a crash before its commit ended, or damage)\" file=" + m.ID + ".q.damaged",
		"removed temporary file\" file=.20261122T100000-0123456789ab.q.tmp",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if msgs, err := s2.List(); len(msgs) != 0 || err != nil {
		t.Errorf("List: %d messages, %v", len(msgs), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files left, want the damaged one", len(entries))
	}
}
