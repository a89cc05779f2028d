package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
