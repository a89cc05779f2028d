package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/queue"
	"elit.local/elit/userdb"
	"elit.local/oneffs"
)

func runElit(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestPasswd: the fields elit passwd prints make a working database entry.
func TestPasswd(t *testing.T) {
	code, out, errs := runElit("s3cret pass\n", "passwd", "-name", "bob", "-mailbox", "Bob <bob@example.net>", "-mailbox", "b2@example.net")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	db, err := userdb.Parse([]byte("["+out+"]"), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Authenticate("bob", "s3cret pass"); !ok {
		t.Errorf("the printed hash does not verify")
	}
	if got, _ := db.Expand("bob@example.org"); len(got) != 2 {
		t.Errorf("mailboxes %q", got)
	}
	if _, ok := db.Login("bob").Scram("SCRAM-SHA-256"); !ok {
		t.Errorf("no SCRAM secret")
	}
	var fields map[string]any
	json.Unmarshal([]byte(out), &fields)
	if _, ok := fields["cram-md5"]; ok {
		t.Errorf("CRAM-MD5 secret without -cram-md5")
	}
	// Fields only, and with CRAM-MD5.
	code, out, _ = runElit("pw\n", "passwd", "-cram-md5")
	if code != 0 || !strings.Contains(out, `"cram-md5": "CRAM-MD5$`) || strings.Contains(out, `"name"`) {
		t.Errorf("exit %d: %s", code, out)
	}
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{"", []string{"passwd"}, exitFailure},
		{"\n", []string{"passwd"}, exitFailure},
		{"pw\n", []string{"passwd", "-mailbox", "a@b.org"}, exitUsage},
		{"pw\n", []string{"passwd", "-name", "a b"}, exitUsage},
		{"pw\n", []string{"passwd", "-bogus"}, exitUsage},
		{"", []string{"frobnicate"}, exitUsage},
	} {
		if code, _, _ := runElit(c.stdin, c.args...); code != c.code {
			t.Errorf("%q: exit %d, want %d", c.args, code, c.code)
		}
	}
}

func TestDBCheck(t *testing.T) {
	dir := t.TempDir()
	demo, err := os.ReadFile("../../../appliance/demo/users.json")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	img := filepath.Join(dir, "db.img")
	if err := oneffs.Create(img, demo, oneffs.WithSize(64<<10), oneffs.WithFormat(oneffs.FailSafe)); err != nil {
		t.Fatal(err)
	}
	img4k := filepath.Join(dir, "db4k.img")
	oneffs.Create(img4k, demo, oneffs.WithSectorSize(4096))
	cases := []struct {
		args []string
		code int
		out  []string
	}{
		{[]string{"-domain", "example.org", write("demo.json", string(demo))}, 0, []string{"ok: 2 addresses at [example.org], 1 can log in, mechanisms [PLAIN LOGIN]"}},
		{[]string{"-domain", "example.org", img}, 0, []string{"ok: 2 addresses"}},
		{[]string{"-domain", "example.org", "-b", "4096", img4k}, 0, []string{"ok: 2 addresses"}},
		{[]string{"-domain", "example.org", write("bad.json", `[{"name":"a","mailbox":[]},{"name":"b","mailboxes":["c@example.org"]}]`)}, 1,
			[]string{`entry 0: json: unknown field "mailbox"`, `entry 1 ("b"): no such user: c@example.org`, "invalid"}},
		{[]string{"-domain", "example.org", write("dup.json", `[{"name":"a","mailboxes":["x@y.org"]},{"name":"a","mailboxes":[]}]`)}, 0, []string{"warning: entry 1"}},
		{[]string{"-domain", "example.org", filepath.Join(dir, "missing")}, exitFailure, nil},
		{[]string{"-domain", "example.org", img4k}, exitFailure, nil}, // wrong sector size: bad checksum
		{[]string{write("demo2.json", string(demo))}, exitUsage, nil},
		{[]string{"-domain", "bad domain", write("demo3.json", string(demo))}, exitUsage, nil},
	}
	for _, c := range cases {
		code, out, errs := runElit("", append([]string{"db", "check"}, c.args...)...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (%s%s)", c.args, code, c.code, out, errs)
		}
		for _, w := range c.out {
			if !strings.Contains(out, w) {
				t.Errorf("%q: output %q, want %q", c.args, out, w)
			}
		}
	}
}

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
		data, _ := os.ReadFile(filepath.Join(state, "queue", id+".msg"))
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

// TestQueueDefaultState: elit queue and elit lists default to elit
// serve's state directory (off the appliance, ./elit-state).
func TestQueueDefaultState(t *testing.T) {
	for _, cmd := range []string{"queue", "lists"} {
		_, _, errs := runElit("", cmd, "-h")
		if want := fmt.Sprintf("(default %q)", defaultState()); !strings.Contains(errs, want) {
			t.Errorf("elit %s -h: the state directory is not %s:\n%s", cmd, want, errs)
		}
	}
	if defaultState() != "elit-state" {
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

func TestParseCmdline(t *testing.T) {
	const uuid = "root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001"
	for _, tt := range []struct {
		in   string
		want bootInfo
	}{
		{"console=ttyS0 " + uuid + "/PARTNROFF=1 ro", bootInfo{RootPartition: 2}},
		{uuid + "/PARTNROFF=2 ro gokrazy.try_boot_inactive=1", bootInfo{RootPartition: 3, Trial: true}},
		{uuid + "/PARTNROFF=2 gokrazy.switch_on_boot=1", bootInfo{RootPartition: 3}},
		{"BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro", bootInfo{}},
	} {
		if got := parseCmdline(tt.in); got != tt.want {
			t.Errorf("parseCmdline(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro gokrazy.try_boot_inactive=1")
	f.Add("root=/dev/mmcblk0p2")
	f.Fuzz(func(t *testing.T, s string) {
		b := parseCmdline(s)
		if b.RootPartition != 0 && b.RootPartition != 2 && b.RootPartition != 3 {
			t.Fatalf("root partition %d", b.RootPartition)
		}
	})
}

func TestWaitForClock(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clock := time.Unix(0, 0) // a board without a clock boots in 1970
	sleeps := 0
	now := func() time.Time { return clock }
	sleep := func(d time.Duration) {
		if sleeps++; sleeps == 3 {
			clock = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) // NTP answered
		}
	}
	if err := waitForClock(context.Background(), log, now, sleep); err != nil || sleeps != 3 {
		t.Fatalf("waitForClock: %v after %d sleeps, want nil after 3", err, sleeps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clock = time.Unix(0, 0)
	if err := waitForClock(ctx, log, now, sleep); err == nil {
		t.Fatal("waitForClock with an ended context and no clock: no error")
	}
}
