package lists

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBounceAddress(t *testing.T) {
	s := NewSigner([]byte("test key"))
	for _, c := range []struct{ list, member string }{
		{"team@example.org", "romain@example.com"},
		{"team@example.org", "a=b+c@example.net"},
	} {
		a := s.BounceAddress(c.list, c.member)
		l, m, ok := s.ParseBounceAddress(a)
		if !ok || l != c.list || m != c.member {
			t.Errorf("%s: %q %q %v", a, l, m, ok)
		}
		// A relay may change the case of the address.
		if l, m, ok := s.ParseBounceAddress(strings.ToLower(a)); !ok || !strings.EqualFold(l, c.list) || !strings.EqualFold(m, c.member) {
			t.Errorf("lower case %s: %q %q %v", a, l, m, ok)
		}
		if !IsBounceAddress(a) {
			t.Errorf("%s: not a bounce address", a)
		}
	}
	good := s.BounceAddress("team@example.org", "romain@example.com")
	sig := good[len("team+bounces=") : len("team+bounces=")+sigLen]
	for _, bad := range []string{
		"team@example.org", "+bounces=a=b@x", "team+bounces=@x", "team+bounces=ab@x", "team+bounces=a=@x",
		// The unsigned form of earlier versions: anyone could make one.
		"team+bounces=romain=example.com@example.org",
		// Another member, another list, another key, a changed signature.
		strings.Replace(good, "romain", "mallory", 1),
		strings.Replace(good, "team+", "staff+", 1),
		NewSigner([]byte("other key")).BounceAddress("team@example.org", "romain@example.com"),
		strings.Replace(good, sig, "AAAAAAAAAAAAA", 1),
		strings.Replace(good, sig, sig[:4], 1),
	} {
		if _, _, ok := s.ParseBounceAddress(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

func TestRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounces.json")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	b.Record("team@example.org", "R@example.com", "550 no", now)
	b.Record("team@example.org", "r@example.com", "551 moved", now.Add(time.Hour))
	check := func(all map[string]map[string]*Member) {
		t.Helper()
		m := all["team@example.org"]["r@example.com"]
		if m == nil || m.Bounces != 2 || m.LastReason != "551 moved" {
			t.Fatalf("%+v", all)
		}
		if lines := Format(all); len(lines) != 1 {
			t.Errorf("%q", lines)
		}
	}
	check(b.Read())
	b.Close()
	// Read again from the file.
	b2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	check(b2.Read())
}

// A bounce appends a line: the file is neither read nor rewritten whole
// each time, and it stays bounded by the number of members.
func TestRecordBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bounces.json")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	members := []string{"a@example.com", "b@example.com", "c@example.com"}
	b.Record("team@example.org", members[0], "x", now)
	fi1, _ := os.Stat(path)
	b.Record("team@example.org", members[1], "x", now)
	fi2, _ := os.Stat(path)
	if !os.SameFile(fi1, fi2) || lines(t, path) != 2 {
		t.Errorf("the file was replaced, or has %d lines", lines(t, path))
	}
	for i := 0; i < 3000; i++ {
		if err := b.Record("team@example.org", members[i%3], strings.Repeat("r", 1000), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := lines(t, path); n > 2*len(members)+64+1 {
		t.Errorf("%d lines for %d members", n, len(members))
	}
	b.Close()
	b2, _ := Open(path)
	all := b2.Read()
	if got := all["team@example.org"]["a@example.com"]; got == nil || got.Bounces != 1001 || len(got.LastReason) != maxReason {
		t.Errorf("after reopening: %+v", got)
	}
}

// The earlier format (one JSON object, rewritten at each bounce) is read,
// and so is a file whose last line a crash cut short.
func TestOpenOld(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.json")
	os.WriteFile(old, []byte(`{"team@example.org": {"r@example.com": {"bounces": 4, "last": "2026-01-01T00:00:00Z", "last_reason": "x"}}}`), 0o600)
	b, err := Open(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Record("team@example.org", "r@example.com", "y", time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, _ = Open(old)
	if m := b.Read()["team@example.org"]["r@example.com"]; m == nil || m.Bounces != 5 {
		t.Errorf("migrated: %+v", m)
	}

	torn := filepath.Join(dir, "torn.json")
	os.WriteFile(torn, []byte(`{"list":"team@example.org","member":"r@example.com","bounces":2,"last":"2026-01-01T00:00:00Z"}`+"\n"+`{"list":"team@exa`), 0o600)
	b, err = Open(torn)
	if err != nil {
		t.Fatal(err)
	}
	b.Record("team@example.org", "s@example.com", "z", time.Unix(1e9, 0))
	b.Close()
	b, _ = Open(torn)
	all := b.Read()
	if all["team@example.org"]["r@example.com"].Bounces != 2 || all["team@example.org"]["s@example.com"] == nil {
		t.Errorf("torn: %+v", all["team@example.org"])
	}
}

func FuzzParseBounceAddress(f *testing.F) {
	s := NewSigner([]byte("test key"))
	f.Add(s.BounceAddress("team@example.org", "romain@example.com"))
	f.Add("team+bounces=romain=example.com@example.org")
	f.Add("a+bounces=AAAAAAAAAAAAA==@")
	f.Fuzz(func(t *testing.T, addr string) {
		l, m, ok := s.ParseBounceAddress(addr)
		if ok && s.BounceAddress(l, m) != addr && !strings.EqualFold(s.BounceAddress(l, m), addr) {
			t.Errorf("%q parsed as %q %q", addr, l, m)
		}
	})
}
