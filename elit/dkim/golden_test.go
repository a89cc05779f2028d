package dkim

import (
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := string(readFile(t, path))
	if got != want {
		t.Errorf("%s changed (go test -update rewrites it):\n got %q\nwant %q", path, got, want)
	}
}

// TestSignGolden pins the form of the fields we write: tag order and
// folding (Ed25519 is deterministic, so the whole field is fixed).
func TestSignGolden(t *testing.T) {
	s := testSigners(t)["ed25519"]
	s.Now = fixed(unixTime(1_800_000_000))
	s.Expiration = 7 * 24 * time.Hour
	s.Identity = "din@example.org"
	f, err := s.Sign(strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "signature-ed25519.golden", f)
}
