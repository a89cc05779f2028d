package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/config"
	"elit.local/elit/queue"
)

func TestQueue(t *testing.T) {
	state := t.TempDir()
	s, err := queue.Open(filepath.Join(state, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "din@example.org", Recipients: []queue.Recipient{{Address: "a@example.net"}, {Address: "b@example.net"}}}
	if err := s.Put(m, strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runElit("", "queue", "-state", state, "list")
	if code != 0 || !strings.Contains(out, m.ID+"        7 bytes  from din@example.org  2 recipients, 2 pending") {
		t.Errorf("list: exit %d: %q %s", code, out, errs)
	}
	code, out, _ = runElit("", "queue", "-state", state, "show", m.ID)
	if code != 0 || !strings.Contains(out, `"address": "b@example.net"`) {
		t.Errorf("show: exit %d: %s", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"queue", "-state", state, "show", "nope"}, exitFailure},
		{[]string{"queue", "-state", filepath.Join(state, "missing"), "list"}, exitFailure},
		{[]string{"queue", "-state", state}, exitUsage},
		{[]string{"queue", "-state", state, "bury", m.ID}, exitUsage},
		{[]string{"queue", "-state", state, "hold", "nope"}, exitFailure},
		{[]string{"queue", "-state", state, "-no-bounce", "drop", m.ID}, exitOK},
	} {
		if code, _, _ := runElit("", c.args...); code != c.code {
			t.Errorf("%q: exit %d, want %d", c.args, code, c.code)
		}
	}
	if _, err := s.Get(m.ID); err == nil {
		t.Errorf("-no-bounce drop with no server: the message is still queued")
	}
}

// TestQueueDefaultState: elit queue and elit lists default to elit
// serve's state directory (off the appliance, ./elit-state).
func TestQueueDefaultState(t *testing.T) {
	for _, cmd := range []string{"queue", "lists"} {
		_, _, errs := runElit("", cmd, "-h")
		if want := fmt.Sprintf("(default %q)", config.DefaultStateDir()); !strings.Contains(errs, want) {
			t.Errorf("elit %s -h: the state directory is not %s:\n%s", cmd, want, errs)
		}
	}
	if config.DefaultStateDir() != "elit-state" {
		return
	}
	t.Chdir(t.TempDir())
	s, err := queue.Open(filepath.Join("elit-state", "queue"))
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "din@example.org", Recipients: []queue.Recipient{{Address: "a@example.net"}}}
	if err := s.Put(m, strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runElit("", "queue", "list"); code != exitOK || !strings.Contains(out, m.ID) {
		t.Errorf("elit queue list in the default state directory: exit %d: %q %s", code, out, errs)
	}
	if code, out, errs := runElit("", "queue", "hold", m.ID); code != exitOK || !strings.Contains(out, "1 recipients") {
		t.Errorf("elit queue hold in the default state directory: exit %d: %q %s", code, out, errs)
	}
}
