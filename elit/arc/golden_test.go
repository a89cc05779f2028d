package arc

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestSealGolden pins the form of the set we write, two hops sealed with
// Ed25519 (deterministic) at a fixed time.
func TestSealGolden(t *testing.T) {
	ss, records := hops(t)
	resolver := memZone(records)
	msg := testMessage
	for i := range 2 {
		s := *ss["ed"]
		s.Now = fixed(1_800_000_000 + int64(i))
		r, err := Verify(context.Background(), resolver, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := s.Seal(strings.NewReader(msg), "mx.example.org", "arc="+string(r.Status)+"; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com header.s=x header.b=AAAA; dmarc=pass header.from=example.com", r.Status)
		if err != nil {
			t.Fatal(err)
		}
		msg = sealed.Header() + msg
	}
	path := "testdata/sealed-ed25519.golden"
	if *update {
		if err := os.WriteFile(path, []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if msg != string(want) {
		t.Errorf("%s changed (go test -update rewrites it):\n got %q\nwant %q", path, msg, want)
	}
}
