package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"elit.local/oneffs"
)

// TestServeDatabase: the database comes from a OneFFS image; a broken
// update leaves the good one in use; SIGHUP picks up a good update; after
// a restart with a broken image the cached copy serves.
func TestServeDatabase(t *testing.T) {
	needTools(t, "swaks")
	dir := t.TempDir()
	img := filepath.Join(dir, "db.img")
	writeImage := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := oneffs.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		if err := im.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	writeImage(testDB(t))
	s := startServer(t, "-db", img, "-db-json", "")
	to := func(rcpt string) int {
		code, _ := s.swaks(s.mx, "--from", "x@example.net", "--to", rcpt)
		return code
	}
	if to("din@example.org") != 0 || to("carol@example.org") == 0 {
		t.Fatalf("first database:\n%s", s.logText())
	}
	// A broken image: the good database stays.
	writeImage([]byte(`[{"name": broken`))
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "cannot load the user database")
	if to("din@example.org") != 0 {
		t.Errorf("the broken database replaced the good one")
	}
	// A good update with carol.
	writeImage(testDB(t, map[string]any{"name": "carol", "mailboxes": []string{"carol@example.net"}}))
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "addresses=4")
	if to("carol@example.org") != 0 {
		t.Errorf("carol unknown after SIGHUP:\n%s", s.logText())
	}
	// Restart on a broken image: the cache serves carol.
	s.stop()
	writeImage([]byte(`not json`))
	s.log.Reset()
	s.start()
	waitLog(t, s, "serving the cached user database")
	if to("carol@example.org") != 0 {
		t.Errorf("carol unknown with the cached database:\n%s", s.logText())
	}
}

// TestServeEmptyDatabase: a database file emptied (nothing, blanks, [])
// and reloaded by SIGHUP is refused: the users stay (RCPT 250, AUTH works),
// the cached copy stays, and a restart on the empty file serves the cache.
func TestServeEmptyDatabase(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t)
	rcpt := func() string {
		t.Helper()
		c := dialRaw(t, s.mx)
		c.send("EHLO client.example.net\r\n")
		c.expect("250")
		c.send("MAIL FROM:<x@example.net>\r\n")
		c.expect("250")
		c.send("RCPT TO:<din@example.org>\r\n")
		r, _ := c.reply()
		c.send("QUIT\r\n")
		return r
	}
	if r := rcpt(); !strings.HasPrefix(r, "250") {
		t.Fatalf("RCPT with the good database: %q", r)
	}
	cache := filepath.Join(s.state, "users.json")
	good, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	loads := func() int {
		log := s.logText()
		return strings.Count(log, "cannot load the user database") + strings.Count(log, "user database loaded")
	}
	for _, empty := range []string{"", " \n\t\n", "[]\n"} {
		if err := os.WriteFile(s.dbPath, []byte(empty), 0o600); err != nil {
			t.Fatal(err)
		}
		before := loads()
		s.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the reload", func() bool { return loads() > before })
		if r := rcpt(); !strings.HasPrefix(r, "250") {
			t.Errorf("database %q: RCPT to a user: %q, want 250\n%s", empty, r, s.logText())
		}
		if got, _ := os.ReadFile(cache); string(got) != string(good) {
			t.Fatalf("database %q: the cache now holds %q", empty, got)
		}
	}
	if !strings.Contains(s.logText(), "no entries") {
		t.Errorf("the log does not say the database has no entries:\n%s", s.logText())
	}
	if code, out := s.swaks(s.sub, "--tls", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
		"--from", "din@example.org", "--to", "x@example.net", "--quit-after", "AUTH"); code != 0 {
		t.Errorf("AUTH after the empty database: exit %d\n%s", code, out)
	}
	// A restart on the empty file: the cache serves.
	s.stop()
	s.log.Reset()
	s.start()
	waitLog(t, s, "serving the cached user database")
	if r := rcpt(); !strings.HasPrefix(r, "250") {
		t.Errorf("after a restart on the empty database: RCPT %q", r)
	}
}
